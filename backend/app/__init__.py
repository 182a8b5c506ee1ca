"""The HTTP API (FastAPI). ``create_app(settings)`` in ``main`` builds it."""
