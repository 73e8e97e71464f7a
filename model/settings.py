"""Every setting of a deployment, read from the environment here and nowhere else: one record per setting with its
default and one line of meaning (docs/deploying.md's table is checked against this one by tests/test_settings.py).

Torch-free and import-free, so the page's boot (before torch is imported) reads it too. A value that cannot be read
(no number where one is wanted) falls back to the default, as an unset one does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, its default as it would be typed ("" = none, see ``meaning``), and what
    it changes."""

    name: str
    default: str
    meaning: str


SETTINGS = (
    Setting("INSPECTOR_PUBLIC", "0", "`1`: typed checkpoint paths must resolve (symlinks followed) inside the allowed "
            "roots, which default to the shipped checkpoints, the models directory and the Hugging Face cache, and so "
            "must every file a loader opens (a `config.json`, tokenizer, shard or `generation_config.json` linking out "
            "is refused) and every model or `snapshots/step_*` folder offered; errors no longer say whether a path "
            "outside them exists; nothing is ever downloaded"),
    Setting("INSPECTOR_ALLOWED_ROOTS", "", "the allowed roots (OS path separator, e.g. `/srv/models:/srv/more`), "
            "public or not (list the shipped checkpoints too if they should stay on offer)"),
    Setting("INSPECTOR_MODELS", "", "the folder of models listed in the sidebar (e.g. `/srv/models`)"),
    Setting("INSPECTOR_HUB_CACHE", "", "`1`: the Hugging Face cache (`HF_HUB_CACHE`, default "
            "`~/.cache/huggingface/hub`) is listed in the sidebar and opens hub ids (`org/name`), and it is an "
            "allowed root when the roots are restricted (under `INSPECTOR_PUBLIC=1` a visitor then opens only what "
            "it holds); `0`: neither. Unset: on for local use, off under `INSPECTOR_PUBLIC=1` (the operator's cache "
            "may hold models not meant for visitors)"),
    Setting("INSPECTOR_ALLOW_DOWNLOAD", "0", "`1`: a hub id the cache does not hold may be downloaded into it through "
            "`huggingface_hub` (its endpoint and token): config, tokenizer and safetensors files only, their size "
            "checked against `INSPECTOR_MAX_MODEL_MB` and the free disk first; the same as `--allow-download` on the "
            "command line; never under `INSPECTOR_PUBLIC=1`. `0`: the app sets `HF_HUB_OFFLINE=1` at start-up"),
    Setting("INSPECTOR_CHECKPOINTS", "checkpoints/", "where the shipped checkpoints are"),
    Setting("INSPECTOR_MAX_MODEL_MB", "", "what loading one model may take (default: half the available memory): the "
            "stored weights, the sizes its config implies and the parameters it builds, checked before anything is "
            "allocated; also the limit for a model `python -m model.train` builds (16 bytes a parameter)"),
    Setting("INSPECTOR_MODEL_CACHE_MB", "4096", "what the loaded models shared by every session may hold together, "
            "counted by their weights' bytes; least recently used first out"),
    Setting("INSPECTOR_MAX_CAPTURE_MB", "256", "above it a call is traced lazily (inputs and a first pass; records, "
            "windows and rows on demand); a complete record over max(this, 512 MiB) is not computed at once (the views "
            "that need one say so; the canvas, rows and windows still answer)"),
    Setting("INSPECTOR_TRACE_CACHE_MB", "512", "what the traced calls shared by all sessions may hold together, each "
            "counted with its logits, records or lazy inputs, its record cache and everything computed from it "
            "(memos, NumPy copies, prepared downloads); least recently used first out, room made before a big call "
            "runs"),
    Setting("INSPECTOR_MAX_SOURCE_CHARS", "300000", "the long-input text box's server-side character limit (the same "
            "for every model); `.txt` uploads are capped at 4 MB and cut to it"),
    Setting("INSPECTOR_MAX_IMAGE_MB", "20", "the largest image file read (an upload, a path given to `run`); "
            "uploads are also capped by Streamlit's `server.maxUploadSize` (20 in `.streamlit/config.toml`)"),
    Setting("INSPECTOR_MAX_IMAGE_PIXELS", "25000000", "the most pixels (width x height) an image may declare in its "
            "header, checked before it is decoded (a decompression bomb is refused there)"),
    Setting("INSPECTOR_MAX_EXPORT_MB", "64", "the largest CSV/JSON built for one download"),
    Setting("INSPECTOR_WARM_UP", "1", "`0`: no warm-up of torch and the model code while the first browser loads the "
            "page"),
    Setting("INSPECTOR_ATLASES", "atlases/", "the atlas page's folder of databases; see [Corpus atlas](atlas.md)"),
    Setting("INSPECTOR_ATLAS_BUILD", "1", "`0`: the atlas page may not build a database (it never may under "
            "`INSPECTOR_PUBLIC=1`)"),
    Setting("INSPECTOR_MAX_JOBS", "", "heavy jobs (patching every head, ranking heads by ablation, the logit lens of "
            "a long input...) running at once on the whole server (default: half the cores, at least 1), each on a job "
            "worker of its own at the lowest CPU priority; more wait in a queue and see their place. Interactive work "
            "(a new input, a head change) never waits behind a job: it has the small and big lanes to itself"),
    Setting("INSPECTOR_MAX_JOB_SECONDS", "", "the longest a job may run before it is stopped (its finished part kept); "
            "default: none, or 600 under `INSPECTOR_PUBLIC=1`, where a session may also run one heavy job at a time"),
    Setting("ATLAS_DB_MEMORY_MB", "256", "what DuckDB may hold while an atlas build writes (at least 64)"),
    Setting("ATLAS_READ_MEMORY_MB", "256", "what DuckDB may hold while the atlas page reads a database (at least 64)"),
    Setting("ATLAS_READ_THREADS", "1", "DuckDB's threads for one of the atlas page's questions"),
    Setting("ATLAS_QUERY_SECONDS", "10", "the atlas page's deadline for one question: a query still running then is "
            "interrupted and the page says so (a hostile or very large database)"),
    Setting("ATTN_WORKERS", "4", "the small lane: workers for calls of up to 1e10 operations (2 x parameters x "
            "tokens), side by side"),
    Setting("ATTN_TORCH_THREADS", "1", "torch threads of each small-lane worker"),
    Setting("ATTN_BIG_WORKERS", "2", "the big lane: workers for bigger forwards (a GPT-2-small-sized model from about "
            "40 tokens); a torch thread count is set once per worker, never switched during a call"),
    Setting("ATTN_TORCH_THREADS_BIG", "", "torch threads of each big-lane worker (default: every core)"),
    Setting("ATTN_BLOCK_MB", "32", "the most one block of query rows x keys x heads of a lazy pass may hold"),
)
BY_NAME = {s.name: s for s in SETTINGS}


def raw(name: str) -> str:
    """The setting's text as set (stripped), else its default."""
    value = os.environ.get(BY_NAME[name].name, "").strip()
    return value or BY_NAME[name].default


def flag(name: str) -> bool:
    """A yes/no setting: 1, true, yes or on."""
    return raw(name).lower() in ("1", "true", "yes", "on")


def megabytes(name: str, minimum: float = 0.0) -> int:
    """A size setting in MiB, as bytes (at least ``minimum`` MiB); 0 when unset without a default."""
    fallback = BY_NAME[name].default
    try:
        mb = float(raw(name))
    except ValueError:
        mb = float(fallback) if fallback else 0.0
    return int(max(mb, minimum) * 2**20)


def count(name: str, default: int | None = None) -> int:
    """A positive whole number (at least 1); ``default`` where the registry has none."""
    try:
        return max(1, int(raw(name)))
    except ValueError:
        return max(1, default if default is not None else int(BY_NAME[name].default or 1))


def seconds(name: str) -> float | None:
    """A positive duration in seconds; None when unset without a default (no limit)."""
    fallback = BY_NAME[name].default
    try:
        value = float(raw(name))
    except ValueError:
        value = float(fallback) if fallback else 0.0
    return value if value > 0 and value == value else None


def paths(name: str) -> list[str]:
    """A list of paths (OS path separator); empty when unset."""
    value = os.environ.get(BY_NAME[name].name, "").strip()
    return [p.strip() for p in value.split(os.pathsep) if p.strip()]


def path(name: str) -> str | None:
    """A path as set, or None (the caller knows where its default lies)."""
    return os.environ.get(BY_NAME[name].name, "").strip() or None


def markdown_table() -> str:
    """The settings as docs/deploying.md shows them (one row each: the name, its default, what it changes)."""
    rows = ["| setting (default) | effect |", "|---|---|"]
    for item in SETTINGS:
        default = f" ({item.default})" if item.default else ""
        rows.append(f"| `{item.name}`{default} | {item.meaning} |")
    return "\n".join(rows)


__all__ = ["BY_NAME", "SETTINGS", "Setting", "count", "flag", "markdown_table", "megabytes", "path", "paths", "raw",
           "seconds"]


if __name__ == "__main__":  # python -m model.settings: the table for docs/deploying.md
    print(markdown_table())
