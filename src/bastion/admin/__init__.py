"""The admin API: a FastAPI app on uvicorn, on its own listener, behind a bearer token."""
