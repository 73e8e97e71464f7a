"""The Training view: one input through every snapshot a checkpoint saved while it trained.

The decoder input is the final model's (its generated output, or the typed target, or the decoder-only text), so
every snapshot's maps share their axes. Snapshots load once per input, outside the app's model cache, and only their
attention weights are kept. The map is the canvas, holding every snapshot's map of the selected attention (every
head): its step slider scrubs through them in the page; the rest of the view follows with the rerun.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st

import viz
from model import CheckpointError, RecordName, allowed_matrix, forbidden_by_reason, load
from model.analysis import entropy, induction_score, previous_token_score, uniform_weights
from model.analysis.compare import similarity_to_reference
from model.core.reasons import codes_from_reasons
from model.own.checkpoint import META_FILE
from model.own.checkpoint import stamp as checkpoint_stamp
from model.safe.files import read_json_file
from viz import tiles
from viz.training import metric_panels

from .. import state, validate
from ..components import attention_canvas
from ..models import pipeline, snapshots
from ..page_types import Context
from ..text import finite_number, md, short
from ..tracing import max_capture_bytes
from .common import chart

MAX_HEADS = 1 << 16  # a head index from the page beyond any model's heads is not a head
STEPS_BYTES = 4 * 2**20  # every snapshot's map of one attention goes to the page up to this size (float32, else
# uint8)

SCORES = {"prev_token": "previous-token score", "induction": "induction score", "similarity":
          "similarity to the final model", "entropy_norm": "normalised entropy"}
SIMILARITY_TEXT = ("Similarity to the final model: for each query row, 1 − the Jensen-Shannon distance (base 2) "
                   "between the snapshot's weights and the final model's on this input, averaged over the rows. It is "
                   "exactly 1 for the final model itself (the star) and 0 when a snapshot's rows put their weight on "
                   "keys the final model's rows give none; the dotted line is uniform attention.")
LOSSES = ("train loss", "valid loss", "loss on first occurrences", "loss on repetitions")
INDUCTION_TEXT = """**Previous-token heads and induction heads.** A *previous-token head* looks one position back:
its row for token *i* puts its weight on token *i − 1*, a stripe just below the diagonal. It writes "the token
before me was X" into each position. An *induction head*, one layer up, uses that: at the second occurrence of a
word it looks for the position whose previous token is that word (the position right after the first occurrence)
and copies what is there. On a repeated segment its map shows a stripe one segment-length back, parallel to the
diagonal. Together they do in-context copying: the model predicts the repetition it has never seen in training.

In this shipped model (2 attention-only layers, 4 heads each), on 1,000 fresh sequences: layer 1's heads score
{ind} (induction) and layer 0 has heads at {prev} (previous token), against {chance_ind} and {chance_prev} for
uniform attention. The loss on the repeated half falls to {loss_rep} nats while the first half stays at {loss_first}
(no model can predict random words). Move the step slider through the phase change (steps 500-1000): the layer-0
stripe and the layer-1 stripe appear together, and the repeated half's loss drops."""
GENERIC_TEXT = ("Move the slider through the snapshots this checkpoint saved while it trained: the map, the per-head "
                "scores below and the small multiples show where its attention settled, and when.")


@dataclass(frozen=True)
class SnapshotSeries:
    steps: list[int]
    metas: list[dict]
    weights: dict  # name -> (S, H, Tq, Tk) float32
    allowed: dict  # name -> (H, Tq, Tk) bool
    reasons: dict  # name -> per head {why masked: (Tq, Tk) bool}
    q_tokens: dict  # name -> query tokens
    k_tokens: dict
    produces: list[str]  # the final model's predictions on the decoder axis
    final: dict  # name -> (H, Tq, Tk) float32: the final model's weights on the same input (the reference)


@st.cache_resource(max_entries=4, show_spinner="Tracing this input through every snapshot…")
def snapshot_series(base: str, device: str, stamp: float, source: str, target: str | None,
                    decoder_ids: tuple[int, ...] | None) -> SnapshotSeries:
    steps, metas, weights, allowed, reasons, q_tok, k_tok = [], [], {}, {}, {}, {}, {}
    produces: list[str] = []
    def traced(path):
        # the final model is the page's own (shared, already loaded); each snapshot is loaded for this series
        pipe = pipeline(base, device) if path == base else load(path, device)
        if pipe.arch == "encoder-decoder" and target is None:
            return pipe, pipe.run(source, generated_ids=list(decoder_ids))
        return pipe, pipe.run(source, target)

    _, res = traced(base)
    final = {name: np.asarray(res.trace[name].numpy().weights, dtype=np.float32)[0] for name in res.trace}
    for step, path in snapshots(base):
        pipe, res = traced(path)
        steps.append(step)
        metas.append(pipe.meta)
        for name in res.trace:
            rec = res.trace[name].numpy()
            weights.setdefault(name, []).append(np.asarray(rec.weights, dtype=np.float32)[0])
            if name not in allowed:
                allowed[name] = allowed_matrix(rec)
                reasons[name] = [forbidden_by_reason(rec, h) for h in range(rec.n_heads)]
                q_tok[name], k_tok[name] = res.axes(name)
        produces = res.output_tokens
    return SnapshotSeries(steps=steps, metas=metas, weights={n: np.stack(w) for n, w in weights.items()},
                          allowed=allowed, reasons=reasons, q_tokens=q_tok, k_tokens=k_tok, produces=produces,
                          final=final)


def _scores(series: SnapshotSeries, name: str, score: str, ids: list[int] | None) -> np.ndarray:
    """(S, H) one score per snapshot and head, on this input."""
    w, ok = series.weights[name], series.allowed[name]
    out = []
    for s in range(len(series.steps)):
        if score == "prev_token":
            out.append(previous_token_score(w[s], ok))
        elif score == "induction":
            out.append(induction_score(w[s], ids, ok))
        elif score == "similarity":
            out.append(similarity_to_reference(w[s], series.final[name], ok))
        else:
            out.append(entropy(w[s], ok)[1])
    return np.stack(out)


def _chance(series: SnapshotSeries, name: str, score: str, ids) -> float | None:
    uniform = uniform_weights(series.allowed[name])
    if score == "prev_token":
        return float(previous_token_score(uniform, series.allowed[name]).mean())
    if score == "induction":
        v = induction_score(uniform, ids, series.allowed[name])
        return None if np.all(np.isnan(v)) else float(np.nanmean(v))
    if score == "similarity":
        return float(np.nanmean(similarity_to_reference(uniform, series.final[name], series.allowed[name])))
    return None


def training(ctx: Context) -> None:
    base = ctx.pick.base
    if not snapshots(base):
        st.info("This checkpoint has no training snapshots (train with --snapshots to save some).")
        return
    meta = ctx.pipe.meta if ctx.pick.step is None else load_meta(base)
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("task") == "induction":
        text = induction_text(meta.get("eval"))
        with st.expander("What to look for: previous-token and induction heads", expanded=True):
            if text is None:
                st.markdown(INDUCTION_TEXT.split("\n\nIn this shipped model")[0])
                st.caption("This checkpoint's meta.json does not hold its evaluation figures as numbers: they are "
                           "not shown.")
            else:
                st.markdown(text)
    else:
        st.caption(GENERIC_TEXT)
    final_ids = None
    if ctx.pipe.arch == "encoder-decoder" and ctx.inputs.target is None:
        from ..tracing import trace

        final, _ = trace(base, ctx.pick.device, ctx.inputs.source, None, ctx.inputs.max_new)
        final_ids = tuple(final.result.target.ids)
    estimate = len(snapshots(base)) * ctx.traced.estimate_bytes / 4  # weights only: about a quarter of a record
    if estimate > max_capture_bytes():
        st.warning("This input through every snapshot would hold more than the capture budget: shorten the text.")
        return
    series = snapshot_series(base, ctx.pick.device, checkpoint_stamp(base), ctx.inputs.source,
                             ctx.inputs.target, final_ids)
    sel = ctx.sel
    name = sel.name
    if name not in series.weights:
        st.info(f"The snapshots have no {name}.")
        return
    steps = series.steps
    best = meta.get("best_step")
    if isinstance(best, int) and not isinstance(best, bool) and steps and best != steps[-1]:
        # reported from a first look: the last snapshot's numbers differed from the header's and nothing said why
        st.caption(f"The model the rest of the app shows (“final”) is the checkpoint of step {best:,}, the best on "
                   f"the validation set; the snapshots run to step {steps[-1]:,}, so the last one differs from it.")
    step = state.keep("train_step", steps, default=steps[-1])
    s = steps.index(step)
    h = max(sel.head, 0)
    stack = RecordName.parse(name).stack
    q_labels = viz.token_labels(series.q_tokens[name], series.produces if stack == "decoder" else None)
    k_labels = viz.token_labels(series.k_tokens[name])
    snap_meta = series.metas[s]
    recorded = _recorded(snap_meta)
    left, right = st.columns([3, 2])
    with left:
        key = (base, ctx.pick.device, checkpoint_stamp(base), ctx.inputs.source, ctx.inputs.target, final_ids)
        maps = step_maps(key, name, sel.kind, sel.layer)
        shown = next(o for o in maps["overviews"] if o["choice"]["step"] == step)
        attention_canvas({"overview": {**shown, "choices": maps["choices"]}, "stacks": {"stack": maps}},
                         key="train_map", on_choice_change=_step_from_page, on_head_change=_head_from_page, head=h)
        st.caption("Move the map's step slider (or its arrow keys) through the snapshots: each snapshot's map of this "
                   "attention is in the page, so the map follows at once; the figures beside and below follow it.")
    with right:
        st.markdown(f"**At step {step}** (recorded when the snapshot was saved):  \n" + ("  \n".join(
            f"{md(k)}: {_shown(v)}" for k, v in recorded.items()) or "no figures recorded"))
    ids = series_ids(ctx, stack)
    options = [k for k in SCORES if _applies(k, name, ctx)]
    default = "induction" if "induction" in options and sel.layer > 0 else options[0]
    score = state.radio("Score per head over training", options, key="train_score", default=default, horizontal=True,
                        format_func=SCORES.get)
    values = _scores(series, name, score, ids)
    reference = None
    if score == "similarity":
        trained = finite_number(meta.get("steps_trained"))
        reference = (int(trained) if trained is not None else steps[-1], 1.0, "final model (the reference): 1")
    chart(viz.score_lines(steps, {f"head {j}": values[:, j] for j in range(values.shape[1])},
                          title=f"{SCORES[score]}, {sel.kind} layer {sel.layer}, on this input", y_title=SCORES[score],
                          current_step=step, chance=_chance(series, name, score, ids), y_range=(0, 1.02),
                          highlight=f"head {h}", reference=reference), "train_scores")
    if score == "similarity":
        st.caption(SIMILARITY_TEXT)
    metrics = _metric_series(series)
    losses = {k: v for k, v in metrics.items() if k in LOSSES}
    scores = {k: v for k, v in metrics.items() if k not in LOSSES}
    if metrics:
        chart(metric_panels(steps, losses, scores, current_step=step,
                                title="recorded at each snapshot (held-out data): losses and scores apart"),
              "train_metrics")
    fig = viz.head_across_steps(series.weights[name][:, h], steps, q_labels, k_labels,
                                head_name=f"{sel.kind} layer {sel.layer} head {h}", allowed=series.allowed[name][0],
                                cols=min(8, len(steps)))
    cells = [(i, 0) for i in range(len(steps))]
    chart(fig, "train_strip", on_select=partial(_jump, "train_strip", cells, steps), selection_mode="points",
          theme=None)


@st.cache_resource(max_entries=8, show_spinner=False)
def step_maps(key: tuple, name: str, kind: str, layer: int) -> dict:
    """Every snapshot's map of attention ``name`` (every head) as a stack for the canvas, each with its choice
    {"step": step}, float32 if they fit STEPS_BYTES, else uint8; ``key``: snapshot_series' arguments."""
    series = snapshot_series(*key)
    w = series.weights[name]  # (S, H, Tq, Tk)
    stack = RecordName.parse(name).stack
    produces = series.produces if stack == "decoder" and len(series.produces) == w.shape[2] else None
    codes = np.stack([codes_from_reasons(r, w.shape[2:]) for r in series.reasons[name]])  # (H, Tq, Tk)
    exact = w.size * 4 <= STEPS_BYTES
    scope = "train-" + hashlib.blake2b(repr((key, name)).encode(), digest_size=6).hexdigest()
    cols = series.k_tokens[name] if stack != RecordName.parse(name).key_stack else None
    overviews = [tiles.exact_overview(
        w[i], series.q_tokens[name], cols, codes=codes, stage="weights", exact=exact, produces=produces,
        value_name="weights", title=f"step {step}: {kind} attention · layer {layer}",
        heads=[str(h) for h in range(w.shape[1])], choice={"step": int(step)}, scope=scope, selectable=False,
        overview_id=f"{scope}/{name}/{step}") for i, step in enumerate(series.steps)]
    group = tiles.choice_group("step", [int(x) for x in series.steps], label="training step", control="slider")
    return {**tiles.stack_payload(overviews), "choices": tiles.choice_groups([group])}


def _reported() -> dict:
    """What the Training map's page reported (the browser's: anything may be there; checked below)."""
    reported = st.session_state.get("train_map")
    return reported if isinstance(reported, dict) else {}


def _step_from_page() -> None:
    choice = validate.choice(_reported().get("choice")) or {}
    if type(choice.get("step")) is int:  # the selector keeps it only if it is a snapshot's step
        state.set_value("train_step", choice["step"])


def _head_from_page() -> None:
    head = validate.number(_reported().get("head"), 0, MAX_HEADS)
    if head is not None:  # clamped to the model's heads by the selector
        state.set_value("head", head)


def load_meta(base: str) -> dict:
    """The final model's meta.json, read through the size-capped JSON reader; {} when missing or not an object."""
    try:
        meta = read_json_file(Path(base) / META_FILE)
    except CheckpointError:
        return {}
    return meta if isinstance(meta, dict) else {}


def series_ids(ctx: Context, stack: str) -> list[int] | None:
    enc = ctx.result.target if stack == "decoder" else ctx.result.source
    return None if enc is None else list(enc.ids)


def _applies(score: str, name: str, ctx: Context) -> bool:
    if score in ("prev_token", "induction"):
        return RecordName.parse(name).kind == "decoder masked self"
    return True


def _shown(value) -> str:
    """A recorded figure for markdown: a number to 4 decimals; anything else as escaped text, said to be so."""
    n = finite_number(value)
    if n is not None:
        return f"{n:.4f}"
    return "(not recorded)" if value is None else f"{md(short(value, 80))} (not a number)"


def induction_text(ev) -> str | None:
    """INDUCTION_TEXT with the checkpoint's evaluation figures, or None when they are not all numbers."""
    if not isinstance(ev, dict):
        return None

    def row(value, index):
        rows = value if isinstance(value, list) else None
        if not rows or not isinstance(rows[index], list) or not rows[index]:
            return None
        nums = [finite_number(v) for v in rows[index]]
        return None if any(v is None for v in nums) else ", ".join(f"{v:.2f}" for v in nums)

    chance = ev.get("chance") if isinstance(ev.get("chance"), dict) else {}
    figures = {"ind": row(ev.get("induction"), -1), "prev": row(ev.get("prev_token"), 0),
               "chance_ind": finite_number(chance.get("induction")),
               "chance_prev": finite_number(chance.get("prev_token")),
               "loss_rep": finite_number(ev.get("loss_repeated")), "loss_first": finite_number(ev.get("loss_first"))}
    if any(v is None for v in figures.values()):
        return None
    return INDUCTION_TEXT.format(**{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in figures.items()})


def _recorded(meta: dict) -> dict:
    """The figures a snapshot's meta.json recorded, by name (values as stored: check them with ``_number``)."""
    if not isinstance(meta, dict):
        return {}
    out = {}
    for key in ("train_loss", "valid_loss", "valid_exact_match"):
        if key in meta:
            out[key.replace("_", " ")] = meta[key]
    ind = meta.get("induction")
    if isinstance(ind, dict):
        out["loss on first occurrences"] = ind.get("loss_first")
        out["loss on repetitions"] = ind.get("loss_repeated")
        out["best induction score"] = ind.get("best_induction_last_layer")
        out["best previous-token score"] = ind.get("best_prev_token_first_layer")
    return out


def _metric_series(series: SnapshotSeries) -> dict:
    """{figure: one value per snapshot (NaN where it is missing or not a number)} for the figures any snapshot
    recorded as a number."""
    recorded = [_recorded(m) if isinstance(m, dict) else {} for m in series.metas]
    keys = dict.fromkeys(k for r in recorded for k, v in r.items() if finite_number(v) is not None)
    return {k: [np.nan if finite_number(r.get(k)) is None else finite_number(r.get(k)) for r in recorded] for k in keys}


def _jump(chart_key: str, cells, steps) -> None:
    cell = viz.clicked_cell(st.session_state.get(chart_key), cells)
    if cell is not None:
        state.set_value("train_step", steps[cell[0]])
