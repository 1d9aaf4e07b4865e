"""`oauth`: Higress/MSE-compatible client-credentials JWT issuer and verifier (SPEC §4)."""
