"""`upstream-oauth`: the gateway as an OAuth client of the upstream's IdP (Kong compatible)."""
