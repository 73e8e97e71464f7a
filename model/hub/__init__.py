"""Models by hub id: the Hugging Face cache (resolving ``org/name[@revision]`` offline, the listing of what it holds
and why some of it cannot be opened) and downloads, only when allowed.

ids.py: parsing and naming ids; cache.py: the cache, through huggingface_hub's own functions; download.py: fetching
into the cache (stoppable, checked before any byte); locate.py: what a person types -> a directory and a name.
``python -m model.hub`` lists the cache and fetches a model. Torch-free; huggingface_hub is imported when used.
"""

from .cache import CachedModel, Listing, NotCached, cache_enabled, find_snapshot, hub_cache, listing, snapshot_ref
from .download import (
    DownloadFailed,
    DownloadJob,
    DownloadPlan,
    DownloadRefused,
    DownloadState,
    DownloadStopped,
    current_job,
    download,
    downloads_allowed,
    how_to_allow,
    plan_download,
    start_job,
)
from .ids import HubIdError, HubRef, looks_like_hub_id
from .locate import Located, locate, locate_or_download

__all__ = ["CachedModel", "DownloadFailed", "DownloadJob", "DownloadPlan", "DownloadRefused", "DownloadState",
           "DownloadStopped", "HubIdError", "HubRef", "Listing", "Located", "NotCached", "cache_enabled", "current_job",
           "download", "downloads_allowed", "find_snapshot", "how_to_allow", "hub_cache", "listing", "locate",
           "locate_or_download", "looks_like_hub_id", "plan_download", "snapshot_ref", "start_job"]
