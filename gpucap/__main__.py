"""``python -m gpucap``: the operator and wallet CLI (gpucap/cli*.py)."""

from gpucap import (  # noqa: F401 - they add their commands to the app
    cli_governance,
    cli_market,
    cli_operator,
    cli_pool,
)
from gpucap.cli import run

if __name__ == "__main__":
    run()
