"""The HTTP edge: FastAPI app, thin routers, errors mapped in one place."""
