"""`uniguard serve`: the HTTP guard service (FastAPI + uvicorn, or Ray Serve replicas)."""
