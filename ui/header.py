"""Above the views: what the model is and what to look for, what it produced and how sure it was, and warnings."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from model import RecordName, RunResult

from . import state
from .links import model_param
from .models import model_name, story_for
from .page_types import ModelPick
from .text import finite_number, md, short
from .views.registry import DECODING, MAP

IMAGE_PAGE = "app_pages/images.py"  # where a model that reads images opens (app.py's navigation)
LOW_CONFIDENCE = 0.5  # a generated token below this probability is flagged
WIDE_TABLE_MAX = 40  # teacher-forced comparison: positions side by side up to this many, one row each above


def _accuracy_text(meta: dict) -> str:
    ev = meta.get("eval") if isinstance(meta.get("eval"), dict) else {}
    n_pairs, n_seq = finite_number(ev.get("n_pairs")) or 0, finite_number(ev.get("n_sequences")) or 0
    if finite_number(ev.get("exact_match")) is not None:
        return f"{100 * finite_number(ev['exact_match']):.1f}% exact match on {n_pairs:,.0f} fresh pairs"
    first, rep, best = (finite_number(ev.get(k)) for k in ("loss_first", "loss_repeated", "best_induction_last_layer"))
    if None not in (first, rep, best):
        return (f"on {n_seq:,.0f} fresh sequences: loss {first:.4g} on first occurrences vs {rep:.4g} on "
                f"repetitions, best induction score {best:.4g}")
    return ""


def show_image_model(pick: ModelPick) -> None:
    """A model that reads images (``pick.pipe.info.modality == "image"``) picked on the text inspector: say so and
    link to the image page, which opens it (by its name, when the pickers list it)."""
    name = model_name(pick.base)
    st.info(f"**{md(name)}** reads images, not text: its attention over a picture is on the Image attention page.")
    link = model_param(pick.base)
    try:
        st.page_link(IMAGE_PAGE, label=f"Open {name} on the Image attention page", icon=":material/image:",
                     query_params={"model": link} if link else None)
    except StreamlitAPIException:  # the inspector run alone (streamlit run app_pages/inspector.py): no other page
        st.caption("Run `streamlit run app.py` for the Image attention page.")


def show_story(pick: ModelPick) -> None:
    """One sentence: the model's task and accuracy (meta.json) and where its attention tells the story."""
    meta = pick.pipe.meta
    story = story_for(meta)
    name = model_name(pick.base)
    if story is None:
        kind = pick.pipe.arch
        st.markdown(f"**{md(name)}** ({md(pick.pipe.info.family)}, {kind}). Pick an attention, layer and head above; "
                    "rows are queries (what each position reads from), columns are keys.")
        return
    n = RecordName.parse(story.attention)
    where = f"layer {n.layer} {'cross' if n.is_cross else ('masked ' if n.stack == 'decoder' else '') + 'self'}" \
            f"-attention, head {story.head}"
    accuracy = _accuracy_text(meta)
    step = "" if pick.step is None else f" (this is the model at training step {pick.step})"
    cols = st.columns([6, 1], vertical_alignment="center")
    cols[0].markdown(f"**{md(name)} model**: {md(meta.get('description', ''))}"
                     + (f"; {md(accuracy)}" if accuracy else "") + f"{md(step)}.  \n"
                     f"**Look at {where}**: {md(story.text)}.")
    if cols[1].button("Show me", key="show_story", help="Select that attention, layer and head on the map"):
        state.set_value("kind", n.kind)
        state.set_value("layer", n.layer)
        state.set_value("head", story.head)
        state.set_value("view", MAP.name)
        st.rerun()


def show_output(pick: ModelPick, result: RunResult, target_typed: str | None) -> None:
    """The output, named for what it is, with its probability; the typed target beside the prediction."""
    kind = pick.pipe.arch
    src_n = len(result.source.ids) if result.source is not None else 0
    if kind == "encoder-only":
        masks = [i for i, t in enumerate(result.source.tokens) if t in ("[MASK]", "<mask>")]
        line = f"**Text** ({src_n} tokens)"
        if masks and result.output_tokens:
            preds = ", ".join(f"{i}·{md(result.output_tokens[i])}" for i in masks)
            line += f" → **predicted at the masked positions:** {preds}"
        st.markdown(line)
        return
    if result.generated:
        probs = result.generated_token_probabilities()
        p_all = math.prod(probs) if probs else float("nan")
        what = "generated continuation" if kind == "decoder-only" else "generated output"
        head = f"**Source** ({src_n} tokens) → " if kind == "encoder-decoder" else \
            f"**Text** ({result.n_prompt} tokens) + "
        st.markdown(f"{head}**{what}:** {md(result.output_text) or '(empty)'}  \n"
                    f"probability of this output: **{p_all:.4f}**" + (
                        f", least likely token: {min(probs):.4f}" if probs else ""))
        if probs and min(probs) < LOW_CONFIDENCE:
            st.warning(f"Low confidence: a generated token had probability {min(probs):.3f} (< {LOW_CONFIDENCE}): "
                       f"the model was unsure here; the alternatives are in the {DECODING.name} view.")
        return
    if kind == "decoder-only":
        ids = result.target.ids
        hits = sum(int(result.output_ids[i] == ids[i + 1]) for i in range(len(ids) - 1))
        st.markdown(f"**Text** ({len(ids)} tokens, traced as written): the model's next-token prediction is right at "
                    f"**{hits} of {len(ids) - 1}** positions (the {DECODING.name} view shows each).")
        return
    # teacher forcing: the typed target and the model's prediction, each named, differences marked
    typed = list(result.target.tokens[1:])
    predicted = list(result.output_tokens[: len(typed)])
    differ = [i for i, (a, b) in enumerate(zip(typed, predicted, strict=False)) if a != b]
    st.markdown(f"**Source** ({src_n} tokens) · **typed target:** {md(target_typed or '')} · "
                f"**model's prediction at each position:** {md(result.output_text)}")
    if typed:
        marks = ["✗" if a != b else "" for a, b in zip(typed, predicted, strict=False)]
        if len(typed) <= WIDE_TABLE_MAX:  # side by side, one column per position
            table = pd.DataFrame([typed, predicted, marks], index=["typed target", "model predicts", "differs"],
                                 columns=[str(i) for i in range(len(typed))])
            st.dataframe(table, width="stretch")
        else:  # one row per position (no pandas Styler: it took ~1 s for 511 positions)
            table = pd.DataFrame({"position": range(len(typed)), "typed target": typed,
                                  "model predicts": predicted, "differs": marks})
            st.dataframe(table, width="stretch", hide_index=True, height=240)
        st.caption(f"Position i of the decoder reads the target up to i and predicts the next token. "
                   f"{len(differ)} of {len(typed)} positions differ" + (
                       f" (highlighted: {', '.join(str(i) for i in differ[:20])})" if differ else "") + ".")


def unknown_note(pipe, result: RunResult) -> str | None:
    """How many input tokens the model does not know ([UNK]: it reads them all as one token), and what it reads;
    None when it knows every one."""
    text = result.target if pipe.arch == "decoder-only" else result.source
    inputs = [(text, "input" if pipe.arch != "encoder-decoder" else "source")]
    if pipe.arch == "encoder-decoder" and not result.generated:
        inputs.append((result.target, "target"))
    parts = []
    for enc, what in inputs:
        if enc is not None and enc.n_unknown:
            total = max(enc.n_unknown, min(enc.n_text_tokens, len(enc.ids)))  # the text's tokens the model read
            parts.append(f"{enc.n_unknown} of the {total} {what} tokens")
    if not parts:
        return None
    described = pipe.meta.get("description") if isinstance(pipe.meta.get("description"), str) else ""
    hint = f" It was trained on {md(short(described, 200))}: give it an input of that kind." if described else \
        " The model's vocabulary has no token for them: the output says little about that text."
    return (f"{' and '.join(parts)} are unknown to this model (shown as [UNK]): it reads every one of them as the "
            f"same token, so it cannot see what that text says.{hint}")


def show_warnings(pick: ModelPick, result: RunResult, notes: list[str], lazy: bool, estimate: int) -> None:
    for note in notes:
        st.warning(note)
    info = pick.pipe.info
    if info.dtype in ("bfloat16", "float16"):
        st.info(f"This model is stored in {info.dtype} and runs in it: every number shown is the {info.dtype} value "
                "it computed (the softmax in float32, cast back, as transformers does)"
                + (", shown and exported as float32, which holds each bfloat16 value exactly." if
                   info.dtype == "bfloat16" else "."))
    note = unknown_note(pick.pipe, result)
    if note:
        st.warning(note)
    for enc, what in ((result.source, "source"), (result.target if not result.generated else None, "target")):
        if enc is not None and enc.truncated:
            n = f"at least {enc.n_text_tokens}" if enc.chars_cut else str(enc.n_text_tokens)
            st.warning(f"The {what} has {n} tokens but the model reads at most {info.max_len} (its special tokens "
                       "included): the rest was cut off.")
    if result.generated and result.stopped in ("limit", "time"):
        untrained = pick.step is not None and pick.step < (pick.pipe.meta.get("steps_trained") or 10**9)
        if result.stopped == "time":
            st.warning("Decoding stopped after its time limit: the output is cut there.")
        elif untrained and pick.pipe.arch == "encoder-decoder":
            st.warning(f"At training step {pick.step} the model has not yet learned to end its output: it ran to the "
                       "length limit. That is what an untrained model does; later snapshots stop by themselves.")
        elif pick.pipe.arch == "encoder-decoder":
            st.warning(f"The model did not end its output within {len(result.target.ids) - 1} tokens: the output is "
                       "cut there (raise “Max generated tokens” in the sidebar if the model needs more).")
    if lazy:
        exact = getattr(result.trace, "exact", True)
        how = ("the first pass ran attention() itself, so what is computed later is bitwise what the call computed"
               if exact else "the model ran its fast path (flash attention) and each row's log-sum-exp was kept; "
               "maps are computed by attention() from the same q and k and agree with it to float rounding (~1e-7)")
        st.info(f"This input's full trace would hold {estimate / 2**20:,.0f} MiB, over the capture budget "
                "(INSPECTOR_MAX_CAPTURE_MB): the call kept each attention's q, k, v, context and a pooled overview "
                "of every head, never a T × T matrix; windows, rows and records are computed when you open them "
                f"({how}).")
