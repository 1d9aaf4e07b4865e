"""`bastion demo`: a ready-to-try gateway with a built-in upstream."""
