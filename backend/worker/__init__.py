"""Celery: the app (broker + results on Redis), its tasks, and the sweep schedule."""
