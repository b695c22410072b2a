"""API routers, one module per engine."""
