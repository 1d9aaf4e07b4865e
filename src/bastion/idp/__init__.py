"""Bastion as a client of an outside identity provider (upstream-oauth now, oidc later)."""
