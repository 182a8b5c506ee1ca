"""``python -m gpucap``: the operator and wallet CLI (gpucap/cli.py)."""

from gpucap.cli import app

if __name__ == "__main__":
    app()
