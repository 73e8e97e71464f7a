"""``python -m model.hub``: the models of the Hugging Face cache this app can open (and why the others cannot), and
fetching one.

    python -m model.hub list                                   # id, revision, size, family; why one cannot open
    python -m model.hub get org/name[@revision] [--allow-download]   # its snapshot (downloaded when allowed)

Every mistake is an ``error:`` line (exit 1); Ctrl-C stops a download cleanly (exit 130).
"""

from __future__ import annotations

import argparse
import sys

from ..safe.errors import CheckpointError
from .cache import hub_cache, scan
from .download import DownloadStopped, downloads_allowed
from .locate import locate_or_download

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.hub", description="The Hugging Face cache, as this app sees it.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the cached models: id, revision, size on disk, family, and why one cannot be opened")
    get = sub.add_parser("get", help="a model's snapshot directory in the cache (downloaded first when allowed)")
    get.add_argument("model", help="a hub id: name, org/name or org/name@revision (a branch, tag or commit)")
    get.add_argument("--allow-download", action="store_true",
                     help="download it when the cache lacks it (as INSPECTOR_ALLOW_DOWNLOAD=1; never with "
                          "INSPECTOR_PUBLIC=1): config, tokenizer and safetensors files only, size checked first")
    get.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _list() -> int:
    import transformers.models.auto.configuration_auto  # noqa: F401  (exact family reasons: this is a command)

    found = scan()
    print(f"{hub_cache()}: {len(found.models)} model revisions ({found.seconds:.2f} s to scan)")
    for m in found.models:
        print(f"  {m.name:<56} {m.commit[:12]:<12} {m.size_on_disk / 1e6:>10,.1f} MB  {m.family or '?':<14} "
              + ("opens" if m.reason is None else f"cannot open: {m.reason}"))
    for problem in found.problems:
        print(f"  problem: {problem}")
    if found.older:
        print(f"  ({found.older} older snapshots that no branch or tag points to are not listed)")
    return 0


def _get(args) -> int:
    if args.allow_download and not downloads_allowed(asked=True):
        print("error: downloads are never allowed on a public server (INSPECTOR_PUBLIC=1)", file=sys.stderr)
        return EXIT_ERROR
    try:
        where = locate_or_download(args.model, allow_download=args.allow_download, progress=not args.quiet)
    except DownloadStopped as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CheckpointError as e:
        print(f"error: {str(e)[:1500]}", file=sys.stderr)
        return EXIT_ERROR
    print(where.path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return _list() if args.command == "list" else _get(args)


if __name__ == "__main__":
    sys.exit(main())
