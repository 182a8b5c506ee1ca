"""Service code: everything the routes and tasks do, callable without HTTP or Celery.

Three rooms, one per subsystem: ``relaying`` (users' actions from row to mined
transaction), ``indexing`` (chain events into the database and the read models)
and ``keepers`` (scheduled permissionless calls, planned as actions). The modules
beside them (chain access, errors, revert decoding, Redis claims, sign-in, health)
are shared by the rooms and import none of them.
"""
