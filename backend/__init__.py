"""gpucap backend: FastAPI API + Celery workers that relay user actions to the chain.

Every user action is first a database row with an idempotency key, then a
Celery task, then a transaction: the row is the source of truth, the task
queue is only a wake-up call (see ``backend.services.relaying.sweep``).
"""
