"""Risk tests: the engine needs nothing; the HTTP test reuses the backend's real stack
(uvicorn API + Celery worker + Redis + anvil deployment, tests/backend/conftest.py)."""

from tests.backend.conftest import backend, stack  # noqa: F401  (fixtures, re-exported)
