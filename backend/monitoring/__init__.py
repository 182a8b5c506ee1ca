"""Prometheus metrics of the API and the worker (``GET /metrics`` on each)."""
