"""``python -m model.train``: train a checkpoint (see model/training/cli.py for the options)."""

from .training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
