"""Stress scenarios: GPU-backed debt projected through falling prices, slow or refuted
demand and short economic lives — the risk gpucap exists to make visible.

Layout (pure Python + numpy; nothing here talks to a chain, and only ``indexed`` and
``collateral`` read the database, the chain index, to build inputs):

- ``formulas``: the shared integer formulas in Python ints (the on-chain RiskModel's and
  RevenuePool's debt schedule), the specification the rest is tested against.
- ``vector``: the same formulas over int64 arrays, exact or refusing (never wrapping).
- ``terms``: the deployed split, covenant and loan terms (the engine's defaults).
- ``fleet``: nodes, pools' debt, history and class defaults; bounds checked once.
- ``scenarios``: the named worlds (base, -20%/yr, -40%/yr, 18/36/60-month lives, slow and
  refuted productivity) and custom ones.
- ``engine``: the projection, one settlement per period (DSCR, LTV, covenant, cash sweep,
  cure, default and the loss waterfall, by EpochSettlement's rules), vectorised over
  nodes; ``reference``: the same for one node in Python ints.
- ``marking``: collateral marked to the market (the lower of book value and what the
  class's GPU-hour prices imply); ``collateral``: each indexed node's book and marked
  value (the pool view, and a stress run with ``collateral="marked"``); ``indexed``: a
  stress run's inputs from the index.
- ``report``/``schemas``/``run``: JSON summaries and the API/CLI shapes.
- ``__main__``: ``python -m backend.risk`` (typer + rich).
"""
