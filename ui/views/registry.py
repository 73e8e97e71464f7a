"""Every view of the inspector, once: the name the picker shows, the slug a link carries, the function that draws it,
what it needs at long inputs, when it is offered, and its group in the picker. The picker, the links and the messages
are built from this table; no other module spells a view's name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..page_types import Context
from ..text import slug

GROUPS = ("See", "Explain", "Intervene", "Compare", "Export")  # the picker's groups, in its order


def always(arch: str, has_snapshots: bool) -> bool:
    return True


def generates(arch: str, has_snapshots: bool) -> bool:
    """A model that produces tokens one by one (not an encoder-only one)."""
    return arch != "encoder-only"


def with_snapshots(arch: str, has_snapshots: bool) -> bool:
    """A checkpoint saved during training too."""
    return has_snapshots


@dataclass(frozen=True)
class View:
    """One view: a name for people, a slug for links, the function that draws it, and when it is offered."""

    name: str  # shown in the picker and in messages; a saved session holds it
    slug: str  # a link's ?view= value: never change one, links in the wild hold it
    function: str  # "module:function" in ui/views/ that draws it from the page's Context
    group: str  # its group in the picker, one of GROUPS
    needs: str | None = None  # what it needs that a long input's trace computes only up to a budget (None: nothing)
    applies: Callable[[str, bool], bool] = always  # (the model's arch, has training snapshots) -> offered

    @property
    def draw(self) -> Callable[[Context], None]:
        """The drawing function. Named, not imported here: the views import this table (their clicks open the map),
        so the table refers to them by module and name, as transformers' auto classes do."""
        module, function = self.function.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)


MAP = View("Attention map", "attention-map", "maps:attention_map", "See")  # the first view; messages send people here
HEAD_GRID = View("Head grid", "head-grid", "maps:head_grid", "See")
DECODING = View("Decoding", "decoding", "decoding:decoding", "See", needs="the complete cross-attention record",
                applies=generates)
STATISTICS = View("Statistics", "statistics", "stats:statistics", "Explain")
TRAINING = View("Training", "training", "training:training", "Compare", applies=with_snapshots)

VIEWS: tuple[View, ...] = (
    MAP,
    HEAD_GRID,
    View("Model overview", "model-overview", "maps:model_overview", "See"),
    View("Head view", "head-view", "headview:head_view", "See", needs="every head's complete weights"),
    View("Step by step", "step-by-step", "steps:step_by_step", "See", needs="every stage of the complete record"),
    View("One query", "one-query", "steps:one_query", "See",
         needs="the complete record (q, k and every stage of one row)"),
    DECODING,
    STATISTICS,
    View("Rollout", "rollout", "rollout:rollout_view", "Explain", needs="every layer's complete weights"),
    View("Needle", "needle", "needle:needle", "Explain"),
    View("Logit lens", "logit-lens", "lens:lens_view", "Explain"),
    View("Ablation", "ablation", "ablation:ablation", "Intervene", needs="the complete records of the ablated run"),
    View("Knockout", "knockout", "knockout:knockout_view", "Intervene"),
    View("Patching", "patching", "patching:patching_view", "Intervene"),
    View("Compare", "compare", "compare:compare", "Compare", needs="the complete records of both runs"),
    TRAINING,
    View("Export", "export", "export:export", "Export"),
)

NAMES = tuple(v.name for v in VIEWS)  # the views' names, in the picker's order


def offered(arch: str, has_snapshots: bool) -> list[View]:
    """The views this model offers, in the picker's order."""
    return [v for v in VIEWS if v.applies(arch, has_snapshots)]


def find(value: str, views: tuple[View, ...] | list[View] = VIEWS) -> View | None:
    """The view a link's slug or a saved session's name stands for (any case, spaces or underscores), else None."""
    key = slug(value)
    return next((v for v in views if key in (v.slug, slug(v.name))), None)


def named(name: str) -> View:
    """The view called ``name`` (a selection's view); KeyError for any other name."""
    for v in VIEWS:
        if v.name == name:
            return v
    raise KeyError(name)
