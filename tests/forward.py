"""A module's forward as the module tests read it. ``Transformer.forward`` computes and returns logits; what a call
keeps and changes belongs to the Recorder passed in (the app's traced call is ``model.call.run``). This helper builds
that recorder the way the call does (names and interventions checked) and returns .logits and .trace."""

from types import SimpleNamespace

from model import Recorder
from model.core.interventions import Interventions, validate


def forward(model, src, tgt, capture=False, *, lazy=False, ablations=None, knockouts=None,
            max_lazy_cache_bytes=None) -> SimpleNamespace:
    """``model(src, tgt, recorder)`` -> .logits, and .trace (None when nothing was captured)."""
    names = model.record_names()
    if not isinstance(capture, bool):
        unknown = sorted(set(capture) - set(names))
        if unknown:
            raise ValueError(f"cannot capture {unknown}: this model has {names}")
    interventions = Interventions.of(ablations, knockouts)
    validate(interventions, names, model.config.n_heads)
    capture = True if lazy and capture is False else capture  # lazy: every attention, kept as inputs
    recorder = None if capture is False and not interventions else Recorder(capture, lazy=lazy,
                                                                              interventions=interventions)
    logits = model(src, tgt, recorder)
    trace = None if capture is False else recorder.trace(src, tgt, max_bytes=max_lazy_cache_bytes)
    return SimpleNamespace(logits=logits, trace=trace)
