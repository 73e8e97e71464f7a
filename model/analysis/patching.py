"""Head patching (activation patching of one head's output): run the clean input again with one head's context
replaced by the context that head had on a corrupted input, and measure how far a metric moves.

The metric is read at a few positions of the output axis:

- ``logit_diff`` (``answer`` and ``wrong`` given): logit[answer] - logit[wrong] at the last metric position
  (``answer`` alone: log p(answer) there);
- ``log_prob`` (default): the clean output's log-probability, sum over the metric positions p of
  log p(t_p), t_p the clean run's prediction (argmax) at p.

The metric positions (default): a decoder-only text, its last position (the next token it predicts), or when
tokens were generated, every position from the prompt's last token on (each generated token and the one after the
last); an encoder-decoder, every decoder position (each output token and the end of the sequence); an encoder-only
model, every position. ``effect`` = metric(patched) - metric(clean); patching from the same input changes nothing
(exactly 0: the reference is an unpatched item of the same batch).

Two inputs of different token lengths are refused (PatchingError): a head's context is patched position by
position, and no alignment of two different lengths says which position of one is which of the other.
Encoder-decoders: the corrupted run reads the clean run's decoder input, so only the sources must have one length.

One batched pass per attention (``intervened_outputs`` with one patched head per item), the output head computed
at the metric positions only, chunked to a memory budget. ``progress(runs done, partial)``, when given, is called
after each batched pass (``partial``: the result of what is finished so far, or None); it may raise to stop the work
there (model.jobs: a job's Stop button). ``patch_heads`` runs every head once and the unpatched reference once
(attentions x heads + 1 runs of the input), ``patch_each_position`` every query position once and the reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..call import intervened_outputs, run
from ..core.names import RecordName

BUDGET_BYTES = 256 * 2**20  # what one batched pass of patched runs may hold (activations and logits), about
METRICS = ("log_prob", "logit_diff")
Progress = Callable[[int, object], None]  # (runs of the input done, the finished part or None); may raise to stop


class PatchingError(ValueError):
    """Two inputs that cannot be patched into each other (different token lengths, a model without a head...)."""


@dataclass(frozen=True)
class Metric:
    """What patching measures: ``value`` of the logits at ``positions`` (see the module docstring)."""

    kind: str  # "log_prob" or "logit_diff"
    positions: tuple[int, ...]  # positions of the output axis it reads
    tokens: tuple[int, ...]  # log_prob: the clean output token at each position
    answer: int | None = None
    wrong: int | None = None

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., P, V) logits at ``positions`` -> (...,) the metric."""
        logits = logits.float()
        if self.kind == "logit_diff":
            last = logits[..., -1, :]
            if self.wrong is None:
                return torch.log_softmax(last, -1)[..., self.answer]
            return last[..., self.answer] - last[..., self.wrong]
        lp = torch.log_softmax(logits, -1)
        index = torch.as_tensor(self.tokens, dtype=torch.long).expand(*lp.shape[:-2], len(self.tokens))
        return lp.gather(-1, index[..., None])[..., 0].sum(-1)

    def describe(self, label=str) -> str:
        """One line saying what is measured (``label``: id -> readable token)."""
        where = (f"position {self.positions[0]}" if len(self.positions) == 1 else
                 f"positions {self.positions[0]}..{self.positions[-1]}")
        if self.kind == "logit_diff" and self.wrong is None:
            return f"log p({label(self.answer)}) at position {self.positions[-1]}"
        if self.kind == "logit_diff":
            return f"logit({label(self.answer)}) − logit({label(self.wrong)}) at position {self.positions[-1]}"
        return f"log-probability of the clean output at {where} (sum over {len(self.positions)} position(s), nats)"


def default_positions(pipe, result) -> list[int]:
    """The positions the default metric reads (module docstring)."""
    T = len(result.logits)
    if pipe.arch == "decoder-only":
        start = result.n_prompt - 1 if result.generated and result.n_prompt else T - 1
        return list(range(max(0, min(start, T - 1)), T))
    return list(range(T))


def metric_for(pipe, clean, answer: int | None = None, wrong: int | None = None,
               positions: Sequence[int] | None = None) -> Metric:
    """The metric of patching ``clean`` (module docstring); ValueError for a position or token outside the model."""
    if clean.logits is None:
        raise PatchingError("this model has no output head: patching measures its predictions")
    T, V = clean.logits.shape
    positions = list(default_positions(pipe, clean) if positions is None else positions)
    if not positions or any(not 0 <= int(p) < T for p in positions):
        raise PatchingError(f"metric positions must lie in 0..{T - 1}")
    positions = [int(p) for p in positions]
    for t in (answer, wrong):
        if t is not None and not 0 <= int(t) < V:
            raise PatchingError(f"token ids must lie in the vocabulary 0..{V - 1}, not {t}")
    if answer is None and wrong is not None:
        raise PatchingError("give the answer token with the wrong one")
    tokens = tuple(int(i) for i in clean.logits.argmax[positions].tolist())
    kind = "log_prob" if answer is None else "logit_diff"
    return Metric(kind=kind, positions=tuple(positions), tokens=tokens,
                  answer=None if answer is None else int(answer), wrong=None if wrong is None else int(wrong))


def check_alignment(clean, corrupt) -> None:
    """PatchingError unless the two runs have the same number of tokens on every axis."""
    for what, a, b in (("source", clean.source, corrupt.source), ("input", clean.target, corrupt.target)):
        la, lb = (None if a is None else len(a.ids)), (None if b is None else len(b.ids))
        if la != lb:
            raise PatchingError(
                f"the clean and corrupted {what}s tokenize to {la} and {lb} tokens: patching replaces a head's output "
                f"position by position, so both must have the same length (change a word for another of one token)")


def corrupt_contexts(corrupt, names: Sequence[str]) -> dict[str, torch.Tensor]:
    if not corrupt.contexts or any(n not in corrupt.contexts for n in names):
        raise PatchingError("the corrupted run needs its heads' contexts: run it with keep_contexts=True "
                            "(and capture=False, so they come from the same kernels as the patched runs)")
    return corrupt.contexts


def items_per_pass(pipe, clean, n_positions: int, budget: int = BUDGET_BYTES) -> int:
    """How many patched runs one batched pass may hold within ``budget`` (activations of every position, attention
    weights of one layer, logits at the metric positions), at least 1."""
    info = pipe.info
    S = 0 if clean.source is None else len(clean.source.ids)
    T = 0 if clean.target is None else len(clean.target.ids)
    width = max(S, T)
    per_item = 4 * ((S + T) * info.d_model * 24 + 3 * info.n_heads * width * width +
                    3 * n_positions * max(info.vocab_size, 1))
    return max(1, int(budget // per_item))


@dataclass(frozen=True)
class PatchingResult:
    """Every head's patching effect: ``effect[kind]`` (layers of that kind, heads) = metric(patched) - metric(clean)."""

    metric: Metric
    clean_value: float  # the metric on the clean run
    corrupt_value: float  # the metric on the corrupted run (the same positions and tokens)
    effect: dict[str, np.ndarray]  # kind -> (layers, heads)
    layers: dict[str, list[int]]  # kind -> the layer of each row of effect[kind]
    seconds: float
    n_runs: int  # patched runs computed (one per head)

    @property
    def gap(self) -> float:
        """corrupt - clean: how far the whole corrupted input moves the metric."""
        return self.corrupt_value - self.clean_value

    @property
    def scale(self) -> float:
        """The largest |effect| over every kind (one colour scale for all; heads not patched yet left out)."""
        return max((float(np.nanmax(np.abs(e))) for e in self.effect.values() if np.isfinite(e).any()), default=0.0)

    @property
    def complete(self) -> bool:
        """Every head was patched (a job stopped halfway keeps the attentions it finished: NaN for the rest)."""
        return all(not np.isnan(e).any() for e in self.effect.values())

    def table(self) -> pd.DataFrame:
        """One row per head: attention, stack, layer, kind, head, effect, fraction (effect / gap; nan when the
        corrupted input does not move the metric)."""
        rows = []
        gap = self.gap
        for kind, eff in self.effect.items():
            for r, layer in enumerate(self.layers[kind]):
                name = RecordName.of_kind(kind, layer)
                for h in range(eff.shape[1]):
                    e = float(eff[r, h])
                    rows.append({"attention": str(name), "stack": name.stack, "layer": layer, "kind": kind,
                                 "head": h, "effect": e, "fraction": e / gap if abs(gap) > 1e-9 else float("nan")})
        return pd.DataFrame(rows)


def _batched_metric(pipe, clean, specs: list[dict], metric: Metric, per_pass: int,
                    on_pass: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """The metric of ``clean``'s input under each spec, ``per_pass`` items to a padded batch; ``on_pass(values so
    far)`` after each pass."""
    values = []
    for start in range(0, len(specs), per_pass):
        logits = intervened_outputs(pipe, clean, specs[start:start + per_pass], positions=metric.positions)
        values.append(metric.value(logits).numpy().astype(np.float64))
        if on_pass is not None:
            on_pass(np.concatenate(values))
    return np.concatenate(values) if values else np.zeros(0)


def patch_heads(pipe, clean, corrupt, answer: int | None = None, wrong: int | None = None, *,
                positions: Sequence[int] | None = None, names: Sequence[str] | None = None,
                budget: int = BUDGET_BYTES, progress: Progress | None = None) -> PatchingResult:
    """Patch every head of every attention (or of ``names``) alone from ``corrupt`` into ``clean`` -> PatchingResult.

    ``clean``: a RunResult of the clean input; ``corrupt``: the corrupted input run with ``keep_contexts=True`` on
    the same number of tokens (an encoder-decoder: on the clean run's decoder input). One batched pass per attention
    (attentions x heads + 1 runs in all); ``progress(runs done, partial result or None)`` after each pass (module
    docstring).
    """
    started = time.perf_counter()
    check_alignment(clean, corrupt)
    metric = metric_for(pipe, clean, answer, wrong, positions)
    names = list(names or pipe.info.record_names)
    contexts = corrupt_contexts(corrupt, names)
    H = pipe.info.n_heads
    per_pass = items_per_pass(pipe, clean, len(metric.positions), budget)
    layers: dict[str, list[int]] = {}
    for name in names:
        n = RecordName.parse(name)
        layers.setdefault(n.kind, []).append(n.layer)
    layers = {k: sorted(v) for k, v in layers.items()}
    effect = {k: np.full((len(v), H), np.nan) for k, v in layers.items()}  # NaN: not patched yet
    corrupt_value = float(metric.value(corrupt.logits.rows(metric.positions)))
    clean_value, runs, finished = None, [0], [0]

    def result() -> PatchingResult:
        return PatchingResult(metric=metric, clean_value=float(clean_value), corrupt_value=corrupt_value,
                              effect={k: e.copy() for k, e in effect.items()}, layers=layers,
                              seconds=time.perf_counter() - started, n_runs=finished[0] * H)

    def on_pass(values: np.ndarray) -> None:
        if progress is not None:
            progress(runs[0] + len(values), None)

    for name in names:
        specs = [{"ablations": {name: {h: contexts[name][h]}}} for h in range(H)]
        if clean_value is None:  # the reference: an unpatched item of the same kind of batch
            specs = [{}] + specs
        values = _batched_metric(pipe, clean, specs, metric, per_pass, on_pass)
        runs[0] += len(values)
        if clean_value is None:
            clean_value, values = float(values[0]), values[1:]
        n = RecordName.parse(name)
        effect[n.kind][layers[n.kind].index(n.layer)] = values - clean_value
        finished[0] += 1
        if progress is not None:
            progress(runs[0], result())
    return result()


@dataclass(frozen=True)
class PositionPatching:
    """One head patched at one query position at a time: ``effect[t]`` = metric(patched at t) - metric(clean)."""

    name: str
    head: int
    metric: Metric
    clean_value: float
    corrupt_value: float
    effect: np.ndarray  # (Tq,)
    seconds: float


def patch_each_position(pipe, clean, corrupt, name: str, head: int, answer: int | None = None,
                        wrong: int | None = None, *, positions: Sequence[int] | None = None,
                        budget: int = BUDGET_BYTES, progress: Progress | None = None) -> PositionPatching:
    """Patch one head's context from ``corrupt`` at one query position at a time (the other positions keep the clean
    context): which positions of that head carry the difference. Both runs need ``keep_contexts=True``.
    ``progress(runs done, partial)``: after each pass, the positions finished so far (NaN for the rest); Tq + 1
    runs in all."""
    started = time.perf_counter()
    check_alignment(clean, corrupt)
    name = str(RecordName.parse(name))
    if not 0 <= int(head) < pipe.info.n_heads:
        raise PatchingError(f"{name} has heads 0..{pipe.info.n_heads - 1}, not {head}")
    if not clean.contexts or name not in clean.contexts:
        raise PatchingError("patching one position keeps the clean context elsewhere: run the clean input with "
                            "keep_contexts=True too")
    metric = metric_for(pipe, clean, answer, wrong, positions)
    base = clean.contexts[name][int(head)]  # (Tq, d_v)
    other = corrupt_contexts(corrupt, [name])[name][int(head)]
    specs = [{}]
    for t in range(base.shape[0]):
        patched = base.clone()
        patched[t] = other[t]
        specs.append({"ablations": {name: {int(head): patched}}})
    corrupt_value = float(metric.value(corrupt.logits.rows(metric.positions)))

    def of(values: np.ndarray) -> PositionPatching:
        effect = np.full(base.shape[0], np.nan)
        effect[: len(values) - 1] = values[1:] - values[0]
        return PositionPatching(name=name, head=int(head), metric=metric, clean_value=float(values[0]),
                                corrupt_value=corrupt_value, effect=effect, seconds=time.perf_counter() - started)

    def on_pass(values: np.ndarray) -> None:
        if progress is not None:
            progress(len(values), of(values))

    values = _batched_metric(pipe, clean, specs, metric, items_per_pass(pipe, clean, len(metric.positions), budget),
                             on_pass)
    return of(values)


def rerun(pipe, result, text: str, target: str | None = None, **options):
    """``result``'s call again on the same tokens (its decoder input as it was, not decoded again), with other
    options (``hidden_states``, ``keep_contexts``, ``capture``...). ``text`` (and ``target``): the input that made
    ``result``."""
    if pipe.arch == "encoder-only":
        again = run(pipe, text, **options)
    elif pipe.arch == "decoder-only":
        again = run(pipe, text, generated_ids=list(result.target.ids) if result.generated else None, **options)
    else:
        again = run(pipe, text, generated_ids=list(result.target.ids), **options)
    for what, a, b in (("source", result.source, again.source), ("decoder input", result.target, again.target)):
        if (a is None) != (b is None) or (a is not None and list(a.ids) != list(b.ids)):
            raise ValueError(f"the {what} of this text is not the one of the given result")
    return again


def run_corrupt(pipe, clean, text: str, **options):
    """The corrupted input ``text`` run for patching into ``clean`` (keep_contexts, nothing captured): an
    encoder-decoder reads the clean decoder input; a decoder-only model with generated tokens continues with the
    clean run's generated tokens after its own prompt."""
    options = {"capture": False, "keep_contexts": True, **options}
    if pipe.arch == "encoder-decoder":
        return run(pipe, text, generated_ids=list(clean.target.ids), **options)
    if pipe.arch == "decoder-only" and clean.generated and clean.n_prompt < len(clean.target.ids):
        prompt = pipe.tokenize_target(text)
        ids = list(prompt.ids) + list(clean.target.ids[clean.n_prompt:])
        return run(pipe, text, generated_ids=ids[: pipe.info.max_len], **options)
    return run(pipe, text, **options)


def token_id(pipe, text: str) -> int:
    """The id of the one token ``text`` is (its text as the model tokenizes it, specials left out); PatchingError
    when it is several tokens or none."""
    enc = pipe.tokenize_target(text) if pipe.arch != "encoder-only" else pipe.tokenize_source(text)
    special = list(enc.special or [False] * len(enc.ids))
    ids = [i for i, s in zip(enc.ids, special, strict=False) if not s]
    if len(ids) != 1:
        raise PatchingError(f"{text[:40]!r} is {len(ids)} tokens for this model, not one")
    return int(ids[0])


__all__ = ["BUDGET_BYTES", "METRICS", "Metric", "PatchingError", "PatchingResult", "PositionPatching", "Progress",
           "check_alignment", "default_positions", "items_per_pass", "metric_for", "patch_each_position",
           "patch_heads", "rerun", "run_corrupt", "token_id"]
