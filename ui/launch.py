"""The app's command line: ``streamlit run app.py -- MODEL [--text TEXT] [--allow-download]`` (Streamlit hands what
follows ``--`` to the script as ``sys.argv``). MODEL is a directory, a listed model's name or a hub id; every new
session opens on it and on TEXT, as a link with ``?model=...&text=...`` would (a link's own values win).
``--allow-download`` lets a hub id the cache lacks be downloaded (as INSPECTOR_ALLOW_DOWNLOAD=1; never on a public
server). Torch-free: the page's boot reads it.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"


@dataclass(frozen=True)
class Launch:
    """What the command line asked for."""

    model: str | None = None  # a directory, a listed model or a hub id
    text: str | None = None  # the input to open with
    allow_download: bool = False
    problem: str | None = None  # what could not be understood (shown once in each session)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # never exit the server over its command line
        raise ValueError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamlit run app.py --", add_help=False,
                description="Open the inspector on a model (a directory or a hub id such as org/name) and a text.")
    p.add_argument("model", nargs="?", default=None, help="a checkpoint directory, a listed model or a hub id")
    p.add_argument("--text", default=None, help="the input text to open with")
    p.add_argument("--allow-download", action="store_true",
                   help="download a hub id the Hugging Face cache lacks (as INSPECTOR_ALLOW_DOWNLOAD=1)")
    return p


@functools.lru_cache(maxsize=8)
def parse(argv: tuple[str, ...]) -> Launch:
    """The arguments after ``--`` -> a Launch (its ``problem`` says what was not understood; never an exit)."""
    try:
        args, unknown = parser().parse_known_args(list(argv))
    except ValueError as e:
        return Launch(problem=f"the command line was not understood ({e})")
    problem = f"the command line's {' '.join(unknown)[:200]} was not understood" if unknown else None
    return Launch(model=(args.model or "").strip() or None, text=args.text, allow_download=args.allow_download,
                  problem=problem)


def launch() -> Launch:
    """This server's command line, when it runs app.py (under pytest or AppTest, ``sys.argv`` is another program's:
    nothing)."""
    argv = list(sys.argv)
    try:
        ours = bool(argv) and Path(argv[0]).resolve() == APP
    except (OSError, ValueError):
        ours = False
    return parse(tuple(argv[1:])) if ours else Launch()


__all__ = ["Launch", "launch", "parse"]
