"""The one traced call, for every pipeline: tokenize once, decode, choose full or lazy capture from one estimate,
run once (on a worker lane), return a finished RunResult. Interventions (ablations, knockouts, patches), hidden
states for the logit lens and padded batches of a corpus are options of this call, written here once.

A vision model's call takes images instead of texts: the input steps turn each into the pixels and the labelled
sequence of ``pipe.image_input`` (the image branch: ``image_inputs``, ``image_result_of``); every other step is the
same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from .api import CaptureBudgetError, ImageEncoding, Pipeline, RunResult
from .capture.recorder import Recorder
from .core.encoding import Encoding
from .core.interventions import Ablations, Interventions, Knockouts, validate
from .core.names import RecordName
from .core.rowstats import KeyFacts, induction_targets
from .runtime import Lane, lane_for

DECODE_SECONDS = 30.0  # greedy decoding stops after this long (a huge model on a slow machine) and says so
INDUCTION_OCCURRENCES = 64  # induction targets: at most this many earlier occurrences of a token
MODES = ("auto", "full", "lazy", "none")


@dataclass(frozen=True)
class CaptureBudget:
    """Memory limits of one call (None: no limit)."""

    full_bytes: int | None = None  # a full capture above this is taken lazily ("auto"), or refused ("full")
    record_bytes: int | None = None  # a lazy trace refuses to compute one complete record above this
    cache_bytes: int | None = None  # a lazy trace's LRU of complete records


def capture_names(pipe: Pipeline, capture: bool | Collection[str]) -> list[str]:
    """The record names a call captures; ValueError for a name the model does not have."""
    names = list(pipe.info.record_names)
    if capture is True:
        return names
    if capture is False:
        return []
    unknown = sorted(set(capture) - set(names))
    if unknown:
        raise ValueError(f"cannot capture {unknown}: this model has {names}")
    return [n for n in names if n in set(capture)]


def estimate_bytes(pipe: Pipeline, src_len: int, tgt_len: int, batch: int = 1,
                   capture: bool | Collection[str] = True) -> int:
    """What a full capture of these records would hold, from the shapes alone (before running it)."""
    return sum(pipe.record_shape(n, src_len, tgt_len, batch).record_bytes() for n in capture_names(pipe, capture))


def _room(pipe: Pipeline, prefix_len: int, max_new_tokens: int | None) -> int:
    room = max(0, pipe.info.max_len - prefix_len)
    return room if max_new_tokens is None else min(room, max(0, int(max_new_tokens)))


def _flops(pipe: Pipeline, tokens: int) -> float:
    return 2.0 * pipe.info.parameters * tokens


def pad_batch(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids padded to the longest with ``pad_id`` -> (ids (B, T) long, valid (B, T) bool)."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long, device=device)
    valid = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows], device=device)
    return ids, valid


def forward(pipe: Pipeline, sources: list[list[int]] | None, targets: list[list[int]] | None, recorder: Recorder | None,
            lane: Lane | None = None, logits_at: Sequence[int] | None = None, pixels: torch.Tensor | None = None):
    """One padded forward on a lane (by its size) -> (ForwardOutput, lane). ``logits_at``: positions of the output
    stack where the output head runs (the logits are (B, P, V)). ``pixels``: a vision model's (B, C, H, W) input
    (``sources`` are then its positions)."""
    src = src_valid = tgt = tgt_valid = None
    if sources is not None:
        src, src_valid = pad_batch(sources, pipe.pad_id, pipe.device)
    if targets is not None:
        tgt, tgt_valid = pad_batch(targets, pipe.pad_id, pipe.device)
    tokens = sum(len(r) for r in (sources or [])) + sum(len(r) for r in (targets or []))
    lane = lane or lane_for(_flops(pipe, tokens), pipe.device)

    at = {} if logits_at is None else {"logits_at": torch.as_tensor(list(logits_at), dtype=torch.long,
                                                                     device=pipe.device)}
    if pixels is not None:
        at["pixels"] = pixels.to(pipe.device)

    def run():
        with torch.inference_mode():
            return pipe.forward(src, tgt, recorder, src_valid=src_valid, tgt_valid=tgt_valid, **at)
    return lane.run(run), lane, src, tgt


def greedy_ids(pipe: Pipeline, source: Encoding | None, prefix: list[int], max_new_tokens: int | None, *,
           interventions: Interventions | None = None) -> tuple[list[int], str]:
    """Greedy decoding of one input -> (decoder input ids: prefix + generated, no end token; why it stopped:
    "eos", "limit" or "time"). Under interventions the whole prefix runs again at each step (a mean ablation needs
    every position), so the output is the intervened model's own."""
    n_new = _room(pipe, len(prefix), max_new_tokens)
    deadline = time.perf_counter() + DECODE_SECONDS
    src_ids = None if source is None else list(source.ids)
    if not interventions:
        tokens = len(prefix) + n_new + (len(src_ids) if src_ids else 0)
        lane = lane_for(_flops(pipe, tokens), pipe.device)

        def run():
            with torch.inference_mode():
                return pipe.greedy_batch(None if src_ids is None else [src_ids], [list(prefix)], n_new, deadline)[0]
        return lane.run(run)
    seq = list(prefix)
    for _ in range(n_new):
        if time.perf_counter() > deadline:
            return seq, "time"
        out, _, _, _ = forward(pipe, None if src_ids is None else [src_ids], [seq],
                               Recorder(capture=False, interventions=interventions))
        nxt = int(out.logits[0, -1].argmax())
        if nxt in pipe.eos_ids:
            return seq, "eos"
        seq.append(nxt)
    return seq, "limit"


def generate(pipe: Pipeline, texts: str | Sequence[str], max_new_tokens: int | None = None) -> str | list[str]:
    """Greedy output text of one text or of several (decoded as one padded batch where the pipeline can)."""
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        return []
    if pipe.arch == "encoder-only":
        raise ValueError("an encoder-only model does not generate")
    deadline = time.perf_counter() + DECODE_SECONDS
    if pipe.arch == "decoder-only":
        prompts = [pipe.tokenize_target(t).ids for t in items]
        srcs = None
    else:
        srcs = [pipe.tokenize_source(t).ids for t in items]
        prompts = [pipe.decoder_start() for _ in items]
    n_new = min(_room(pipe, len(p), max_new_tokens) for p in prompts)
    tokens = sum(len(p) + n_new for p in prompts) + sum(len(s) for s in (srcs or []))
    lane = lane_for(_flops(pipe, tokens), pipe.device)

    def run():
        with torch.inference_mode():
            return pipe.greedy_batch(srcs, prompts, n_new, deadline)
    rows = lane.run(run)
    outs = [pipe.detokenize(ids[len(p):]) for (ids, _), p in zip(rows, prompts, strict=True)]
    return outs[0] if isinstance(texts, str) else outs


def run(pipe: Pipeline, text, target: str | None = None, *, max_new_tokens: int | None = None,
        generated_ids: list[int] | None = None, capture: bool | Collection[str] = True, mode: str = "auto",
        budget: CaptureBudget = CaptureBudget(), ablations: Ablations | None = None, knockouts: Knockouts | None = None,
        hidden_states: bool = False, keep_contexts: bool = False, statistics: bool = True) -> RunResult:
    """Trace one call.

    Encoder-decoder: ``text`` is the source; generate greedily when ``target`` is None (up to ``max_new_tokens``),
    else teacher-force it. Decoder-only: ``text`` is the text; with ``max_new_tokens`` it is first extended greedily
    and the whole sequence traced. Encoder-only: ``text`` is the text. ``generated_ids``: a decoder input decoded
    before (by this model or one with the same vocabulary), traced without decoding again. A vision model
    (``pipe.info.modality == "image"``): ``text`` is the image: a PIL image, an image file's path (os.PathLike, such
    as pathlib.Path: a str is a text) or an (H, W, 3) uint8 array, read through model.safe.images.
    ``capture``: True, False or the names to record; ``mode``: "auto" (full when the estimate fits
    ``budget.full_bytes``, else lazy), "full", "lazy" or "none". ``ablations`` / ``knockouts``: see
    model.core.interventions (decoding runs under them too). ``hidden_states``: keep the residual streams.
    ``statistics``: a lazy trace computes its per-row statistics during the call (True), or when first asked (a
    first map sooner; the same numbers).
    """
    return run_batch(pipe, [text], None if target is None else [target], max_new_tokens=max_new_tokens,
                     generated_ids=None if generated_ids is None else [generated_ids], capture=capture, mode=mode,
                     budget=budget, ablations=ablations, knockouts=knockouts, hidden_states=hidden_states,
                     keep_contexts=keep_contexts, statistics=statistics)[0]


def run_batch(pipe: Pipeline, texts: Sequence, targets: Sequence[str] | None = None, *,
              max_new_tokens: int | None = None, generated_ids: Sequence[list[int]] | None = None,
              capture: bool | Collection[str] = True, mode: str = "auto", budget: CaptureBudget = CaptureBudget(),
              ablations: Ablations | None = None, knockouts: Knockouts | None = None, hidden_states: bool = False,
              keep_contexts: bool = False, overviews: bool = True, statistics: bool = True) -> list[RunResult]:
    """``run`` for several texts in one padded forward; each result's trace is cut to its own lengths (a lazy
    one keeps its first pass: statistics and overviews per item). ``overviews=False`` skips the pooled maps (the
    corpus atlas needs only the statistics)."""
    started = time.perf_counter()
    texts = list(texts)
    if not texts:
        return []
    names, interventions = checked_call(pipe, len(texts), targets, generated_ids, capture, mode, ablations, knockouts)
    inputs = call_inputs(pipe, texts, targets, max_new_tokens, generated_ids, interventions)  # tokenized once
    chosen, estimate = choose_capture(pipe, inputs, names, mode, budget)
    recorder = Recorder(names if chosen != "none" else False, lazy=chosen == "lazy", interventions=interventions,
                        hidden_states=hidden_states, key_facts=key_facts_of(inputs), overviews=overviews,
                        keep_contexts=keep_contexts, statistics=statistics)
    out, lane, src, tgt = forward(pipe, inputs.source_ids, inputs.decoder_ids, recorder, pixels=inputs.pixels)
    trace = None if chosen == "none" else recorder.trace(src, tgt, lane=lane, max_bytes=budget.cache_bytes,
                                                         max_record_bytes=budget.record_bytes)
    seconds = time.perf_counter() - started
    return [result_of(pipe, inputs, i, out, recorder, trace, mode=chosen, estimate=estimate, seconds=seconds)
            for i in range(len(texts))]


def checked_call(pipe: Pipeline, n: int, targets, generated_ids, capture, mode: str, ablations, knockouts
                 ) -> tuple[list[str], Interventions]:
    """A call's options checked against the model and the number of texts -> (names to capture, interventions)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    names = capture_names(pipe, capture)
    interventions = Interventions.of(ablations, knockouts)
    validate(interventions, pipe.info.record_names, pipe.info.n_heads)
    if interventions and len(interventions.ablations) > 1 and len(interventions.ablations) != n:
        raise ValueError("give one ablation per text, or one for all")
    if interventions and len(interventions.knockouts) > 1 and len(interventions.knockouts) != n:
        raise ValueError("give one knockout per text, or one for all")
    if targets is not None and len(targets) != n:
        raise ValueError("need one target text per source text")
    if generated_ids is not None and len(generated_ids) != n:
        raise ValueError("need one generated id list per text")
    return names, interventions


@dataclass(frozen=True)
class CallInputs:
    """The tokens of one call, per item: the encoder's input, a decoder-only model's prompt, the decoder's input
    (given, typed or generated here) and why generation stopped."""

    sources: list[Encoding] | None  # None: decoder-only
    prompts: list[Encoding] | None  # decoder-only only
    decoder: list[Encoding] | None  # None: encoder-only
    generated: bool
    stopped: list[str]
    images: list[ImageEncoding] | None = None  # a vision model's call: each image as it reads it (sources: labels)

    @property
    def pixels(self) -> torch.Tensor | None:
        """(B, C, H, W) the images' pixels, one batch; None for texts."""
        return None if self.images is None else torch.stack([im.pixels for im in self.images])

    @property
    def source_ids(self) -> list[list[int]] | None:
        return None if self.sources is None else [s.ids for s in self.sources]

    @property
    def decoder_ids(self) -> list[list[int]] | None:
        return None if self.decoder is None else [d.ids for d in self.decoder]


def call_inputs(pipe: Pipeline, texts: list[str], targets, max_new_tokens: int | None, generated_ids,
                interventions: Interventions) -> CallInputs:
    """Tokenize once; the decoder's input given (``generated_ids``), typed (``targets``) or decoded greedily."""
    if pipe.info.modality == "image" or any(is_image(t) for t in texts):
        return image_inputs(pipe, texts, targets, max_new_tokens, generated_ids)
    arch = pipe.arch
    sources = [pipe.tokenize_source(t) for t in texts] if arch != "decoder-only" else None
    prompts = [pipe.tokenize_target(t) for t in texts] if arch == "decoder-only" else None
    stopped = [""] * len(texts)

    def decoded(i: int, source: Encoding | None, prefix: list[int]) -> list[int]:
        if generated_ids is not None:
            return _checked_ids(pipe, generated_ids[i], prefix)
        ids, stopped[i] = greedy_ids(pipe, source, prefix, max_new_tokens, interventions=interventions)
        return ids

    if arch == "decoder-only":
        if generated_ids is None and not max_new_tokens:
            return CallInputs(None, prompts, prompts, False, stopped)
        rows = [decoded(i, None, p.ids) for i, p in enumerate(prompts)]
        decoder = [pipe.encoding_from_ids(r, p) for r, p in zip(rows, prompts, strict=True)]
        return CallInputs(None, prompts, decoder, True, stopped)
    if arch == "encoder-decoder":
        if targets is not None:
            return CallInputs(sources, None, [pipe.tokenize_target(t) for t in targets], False, stopped)
        rows = [decoded(i, s, pipe.decoder_start()) for i, s in enumerate(sources)]
        return CallInputs(sources, None, [pipe.encoding_from_ids(r) for r in rows], True, stopped)
    return CallInputs(sources, None, None, False, stopped)


def choose_capture(pipe: Pipeline, inputs: CallInputs, names: list[str], mode: str, budget: CaptureBudget
                   ) -> tuple[str, int]:
    """One estimate from the shapes, one choice -> ("full", "lazy" or "none", the full capture's bytes)."""
    S = max((len(s.ids) for s in inputs.sources), default=0) if inputs.sources else 0
    T = max((len(d.ids) for d in inputs.decoder), default=0) if inputs.decoder else 0
    n = len(inputs.stopped)
    estimate = estimate_bytes(pipe, S, T, n, names)
    if not names:
        return "none", estimate
    if mode != "auto":
        if mode == "full" and budget.full_bytes is not None and estimate > budget.full_bytes:
            raise CaptureBudgetError(
                f"tracing {n} x ({S} source, {T} target) tokens would hold about {estimate / 2**20:,.0f} MiB of "
                f"attention records, over the {budget.full_bytes / 2**20:,.0f} MiB budget: capture lazily, capture "
                f"fewer records or shorten the text")
        return mode, estimate
    return ("full" if budget.full_bytes is None or estimate <= budget.full_bytes else "lazy"), estimate


def key_facts_of(inputs: CallInputs) -> dict[str, list[KeyFacts]]:
    """What the statistics need to know about the tokens of each stack: specials, and induction targets."""
    key_facts = {}
    if inputs.sources is not None:
        key_facts["encoder"] = [KeyFacts(special=s.special) for s in inputs.sources]
    if inputs.decoder is not None:
        key_facts["decoder"] = [KeyFacts(special=d.special, induction=induction_targets(
            d.ids, ignore=[i for i, sp in zip(d.ids, d.special or [], strict=False) if sp],
            most=INDUCTION_OCCURRENCES)) for d in inputs.decoder]
    return key_facts


def result_of(pipe: Pipeline, inputs: CallInputs, i: int, out, recorder: Recorder, trace, *, mode: str,
              estimate: int, seconds: float) -> RunResult:
    """Item ``i`` of the batch as one finished result, cut to its own lengths."""
    if inputs.images is not None:
        return image_result_of(pipe, inputs, i, out, recorder, trace, mode=mode, estimate=estimate, seconds=seconds)
    arch = pipe.arch
    s = None if inputs.sources is None else inputs.sources[i]
    d = None if inputs.decoder is None else inputs.decoder[i]
    n = len((d if arch != "encoder-only" else s).ids)
    logits = None if out.logits is None else out.logits[i, :n].float().cpu()
    out_ids = [] if logits is None else logits.argmax(-1).tolist()
    n_prompt = len(inputs.prompts[i].ids) if arch == "decoder-only" else 0
    if inputs.generated:
        text = pipe.detokenize(d.ids[n_prompt:] if arch == "decoder-only" else d.ids[1:])
    else:
        text = pipe.detokenize(out_ids)
    why = inputs.stopped[i]
    if inputs.generated and not why:  # traced from given ids: did the model end there?
        why = "eos" if out_ids and out_ids[-1] in pipe.eos_ids else "limit"

    def length(stack: str) -> int:
        return len(s.ids) if stack == "encoder" else len(d.ids)

    if trace is not None and len(inputs.stopped) > 1:
        trace = trace.item(i, None if s is None else len(s.ids), None if d is None else len(d.ids))
    hidden = None
    if recorder.hidden:
        hidden = {stack: torch.stack([h[i, :length(stack)] for h in layers]).float().cpu()
                  for stack, layers in recorder.hidden.items()}
    final = None if out.last_hidden is None else out.last_hidden[i, :n].float().cpu()
    contexts = None
    if recorder.keep_contexts:
        contexts = {name: c[i, :, :length(RecordName.parse(name).query_stack)].cpu()
                    for name, c in recorder.contexts.items()}
    return RunResult(
        source=s, target=d, output_ids=out_ids, output_tokens=[pipe.token_label(j) for j in out_ids],
        output_text=text, generated=inputs.generated, logits=logits, trace=trace, n_prompt=n_prompt, stopped=why,
        mode=mode, estimate_bytes=estimate, seconds=seconds, hidden=hidden, final_hidden=final, contexts=contexts)


def _checked_ids(pipe: Pipeline, ids: list[int], prefix: list[int]) -> list[int]:
    """A given decoder input: it must start like one of this model's and fit its length."""
    ids = [int(i) for i in ids]
    if ids[:len(prefix)] != list(prefix) or len(ids) > pipe.info.max_len:
        raise ValueError(f"the given decoder ids must start with this model's decoder start {prefix} and fit its "
                         f"{pipe.info.max_len} positions")
    vocab = pipe.info.vocab_size
    if vocab and any(not 0 <= i < vocab for i in ids):
        raise ValueError(f"the given decoder ids must lie in this model's vocabulary (0..{vocab - 1})")
    return ids


# ---- the image branch: a vision model's input steps and its result ------------------------------------------------

def is_image(x) -> bool:
    """An image rather than a text: a PIL image, an array, a path object (a str is always a text)."""
    return not isinstance(x, str) and (isinstance(x, os.PathLike) or hasattr(x, "__array_interface__")
                                       or type(x).__module__.startswith("PIL."))


def open_image(source):
    """A PIL image, an image file's path or an (H, W, 3) uint8 array -> a checked RGB PIL image: model.safe.images
    reads and checks it (EXIF orientation, size and pixel caps), or, where that module is not there, only PIL images
    and arrays are taken."""
    try:
        from .safe.images import open_image as checked_open
    except ImportError:
        return _image_without_files(source)
    return checked_open(source)


def _image_without_files(source):
    """PIL images and (H, W, 3) uint8 arrays only (no file is read)."""
    import numpy as np
    from PIL import Image

    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if hasattr(source, "__array_interface__") and not isinstance(source, str):
        array = np.asarray(source)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
            raise ValueError(f"an image array must be (H, W, 3) uint8, got {array.dtype} of shape {array.shape}")
        return Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    raise ValueError(f"cannot read {type(source).__name__} as an image here: give a PIL image or an (H, W, 3) uint8 "
                     "array")


def image_inputs(pipe: Pipeline, images: list, targets, max_new_tokens: int | None, generated_ids) -> CallInputs:
    """Each image read once (``open_image``) and turned into what the model reads (``pipe.image_input``)."""
    if pipe.info.modality != "image":
        kinds = sorted({type(x).__name__ for x in images if is_image(x)})
        raise ValueError(f"this model ({pipe.info.family}) reads text; it was given an image ({', '.join(kinds)})")
    if any(isinstance(x, str) for x in images):
        raise ValueError(f"this model ({pipe.info.family}) reads images, not text: give it a PIL image, an image "
                         "file's path (a pathlib.Path) or an (H, W, 3) uint8 array")
    if targets is not None or generated_ids is not None or max_new_tokens:
        raise ValueError("an image model reads one image per item: no target, generated ids or new tokens")
    encoded = [pipe.image_input(open_image(x)) for x in images]
    if len({tuple(e.pixels.shape) for e in encoded}) > 1:
        raise ValueError("these images come out of the model's processor in different sizes: run them one at a time")
    return CallInputs([e.encoding for e in encoded], None, None, False, [""] * len(encoded), images=encoded)


def image_result_of(pipe: Pipeline, inputs: CallInputs, i: int, out, recorder: Recorder, trace, *, mode: str,
                    estimate: int, seconds: float) -> RunResult:
    """Item ``i`` of an image batch as one result: a classifier's prediction is ``output_text`` (the class name),
    ``output_ids`` / ``output_tokens`` (its id and name) and ``probability``; the logits are (1, n_classes)."""
    s, image = inputs.sources[i], inputs.images[i]
    T = len(s.ids)
    logits = None if out.logits is None else out.logits[i].float().cpu()  # (1, n_classes)
    out_ids = [] if logits is None else [int(logits[-1].argmax())]
    probability = None if logits is None else float(torch.softmax(logits[-1], -1)[out_ids[0]])
    labels = [pipe.token_label(j) for j in out_ids]
    if trace is not None and len(inputs.stopped) > 1:
        trace = trace.item(i, T, None)
    hidden = None
    if recorder.hidden:
        hidden = {stack: torch.stack([h[i, :T] for h in layers]).float().cpu() for stack, layers in
                  recorder.hidden.items()}
    final = None if out.last_hidden is None else out.last_hidden[i, :T].float().cpu()
    contexts = None if not recorder.keep_contexts else {name: c[i].cpu() for name, c in recorder.contexts.items()}
    return RunResult(
        source=s, target=None, output_ids=out_ids, output_tokens=labels, output_text=" ".join(labels),
        generated=False, logits=logits, trace=trace, mode=mode, estimate_bytes=estimate, seconds=seconds,
        hidden=hidden, final_hidden=final, contexts=contexts, image=image, probability=probability)


def intervened_outputs(pipe: Pipeline, result: RunResult, specs: Sequence[Interventions | dict], *,
                       positions: Sequence[int] | None = None) -> torch.Tensor:
    """``result``'s input run once per spec in one padded batch, item n under ``specs[n]`` (Interventions, or
    {"ablations": ..., "knockouts": ...}) -> (N, T, V) logits on the CPU, or the (N, T, d) last hidden states
    of a model without an output head. ``positions``: the output head runs on those positions of the output axis
    only -> (N, P, V)."""
    N = len(specs)
    items = [s if isinstance(s, Interventions) else Interventions.of(s.get("ablations"), s.get("knockouts"))
             for s in specs]
    for it in items:
        validate(it, pipe.info.record_names, pipe.info.n_heads)
    ablations = tuple(it.ablations[0] if it.ablations else {} for it in items)
    knockouts = tuple(it.knockouts[0] if it.knockouts else {} for it in items)
    batch = Interventions(ablations=ablations if any(ablations) else (),
                          knockouts=knockouts if any(knockouts) else ())
    src = None if result.source is None else [list(result.source.ids)] * N
    tgt = None if result.target is None else [list(result.target.ids)] * N
    pixels = None if result.image is None else result.image.pixels.expand(N, -1, -1, -1)
    out, _, _, _ = forward(pipe, src, tgt, Recorder(capture=False, interventions=batch), logits_at=positions,
                           pixels=pixels)
    values = out.logits if out.logits is not None else out.last_hidden
    return values.float().cpu()


class CallMethods:
    """The call's API on a pipeline: ``pipe.run(...)``, ``pipe.generate(...)``, ``pipe.greedy(...)`` (the functions
    of this module, bound)."""

    def run(self, text, target: str | None = None, **options) -> RunResult:
        return run(self, text, target, **options)

    def run_batch(self, texts: Sequence[str], targets: Sequence[str] | None = None, **options) -> list[RunResult]:
        return run_batch(self, texts, targets, **options)

    def generate(self, texts: str | Sequence[str], max_new_tokens: int | None = None) -> str | list[str]:
        return generate(self, texts, max_new_tokens)

    def greedy(self, text: str, max_new_tokens: int | None = None) -> list[int]:
        """Greedy decoding of one text -> the decoder input ids (prefix + output, no end token); pass them to
        ``run(..., generated_ids=...)`` to trace them."""
        if self.arch == "encoder-only":
            raise ValueError("an encoder-only model does not generate")
        if self.arch == "decoder-only":
            return greedy_ids(self, None, self.tokenize_target(text).ids, max_new_tokens)[0]
        return greedy_ids(self, self.tokenize_source(text), self.decoder_start(), max_new_tokens)[0]


__all__ = ["CallInputs", "CallMethods", "CaptureBudget", "DECODE_SECONDS", "MODES", "call_inputs", "capture_names",
           "checked_call", "choose_capture", "estimate_bytes", "forward", "generate", "greedy_ids", "image_inputs",
           "image_result_of", "intervened_outputs", "is_image", "key_facts_of", "open_image", "result_of", "run",
           "run_batch"]
