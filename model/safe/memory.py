"""How much memory loading one model may take: ``INSPECTOR_MAX_MODEL_MB``, by default half of what is available.

Checked before anything is built: from the sizes a config implies and from the safetensors headers, so a config of
200,000 layers or a sparse file that claims 24 GB of weights is refused in a second instead of exhausting the
machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import settings
from .errors import CheckpointError

FALLBACK_MB = 4096  # when neither the variable nor /proc/meminfo nor sysconf says anything


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def max_model_bytes() -> int:
    """The budget for one model's weights in memory: INSPECTOR_MAX_MODEL_MB, else half the available memory."""
    configured = settings.megabytes("INSPECTOR_MAX_MODEL_MB")
    if configured > 0:
        return configured
    available = _available_bytes()
    return available // 2 if available else FALLBACK_MB * 2**20


def check_model_bytes(n_bytes: int, file: Path | str, what: str) -> None:
    """CheckpointError naming ``file`` when ``n_bytes`` (described by ``what``) is over the budget."""
    budget = max_model_bytes()
    if n_bytes > budget:
        raise CheckpointError(f"{file}: {what} need {n_bytes / 2**30:,.2f} GiB, over this server's model memory budget "
                              f"of {budget / 2**30:,.2f} GiB (INSPECTOR_MAX_MODEL_MB)")
