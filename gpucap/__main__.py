"""``python -m gpucap``: the operator and wallet CLI (gpucap/cli*.py)."""

from gpucap import cli_market, cli_operator, cli_pool  # noqa: F401 - they add their commands to the app
from gpucap.cli import run

if __name__ == "__main__":
    run()
