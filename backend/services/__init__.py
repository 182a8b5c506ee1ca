"""Service code: everything the routes and tasks do, callable without HTTP or Celery."""
