"""`headers`: set and remove request headers upstream and response headers to the client."""
