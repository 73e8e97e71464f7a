"""Teaching playground: self-attention, causal masking, scaling, cross-attention and multi-head, with real numbers.

Thin page: widgets, layout and messages. The numbers come from model.teaching (built on model.core.attention),
the figures from viz.playground.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/playground.py` / AppTest.from_file
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from model import teaching  # noqa: E402
from ui import boot, state  # noqa: E402
from viz import playground as vp  # noqa: E402

DEFAULT_SENTENCE = "Life is short, eat dessert first"
DEFAULT_SENTENCE_2 = "La vie est courte"


def chart(fig, key: str, where=st) -> None:
    where.plotly_chart(fig, key=key, width="stretch")


def operator(where, op: str) -> None:
    where.markdown(f"<div style='text-align:center;font-size:28px'>{op}</div>", unsafe_allow_html=True)


def product_row(left, right, result, key: str, op: str = "@") -> None:
    """left op right on one row, "= result" on the next; column widths follow the matrices' widths."""
    width = vp.figure_columns
    cols = st.columns([width(left), 1, width(right)], vertical_alignment="center")
    chart(left, f"{key}_left", cols[0])
    operator(cols[1], op)
    chart(right, f"{key}_right", cols[2])
    cols = st.columns([1, width(result), max(2, 30 - width(result))], vertical_alignment="center")
    operator(cols[0], "=")
    chart(result, f"{key}_result", cols[1])


def sidebar_controls() -> dict:
    sb = st.sidebar
    sb.header("Playground controls")
    c = dict(
        sentence=sb.text_input("Sentence", DEFAULT_SENTENCE, key="pg_sentence", max_chars=2000),
        seed=int(sb.number_input("Seed", 0, 1_000_000, 123, step=1, key="pg_seed")),
        d_in=sb.slider("d_in (embedding width)", 1, 32, 8, key="pg_d_in"),
        d_k=sb.slider("d_k (= d_q, query/key width)", 1, 64, 4, key="pg_d_k"),
        d_v=sb.slider("d_v (value width)", 1, 32, 3, key="pg_d_v"),
        scale=sb.toggle("Scale scores by 1/√d_k", True, key="pg_scale"),
        causal=sb.toggle("Causal mask (decoder self-attention)", False, key="pg_causal"),
        diagonal=sb.select_slider("triu diagonal", options=[-1, 0, 1, 2], value=1, key="pg_diagonal",
                                  help="mask = triu(ones(T, T), diagonal). 1 is correct: a token sees itself "
                                       "and the past. 0 is the classic bug: every token loses itself."),
    )
    return c


def section_qkv(sent: teaching.Sentence, steps: teaching.SelfAttentionSteps, c: dict) -> None:
    st.header("1. Tokens, embeddings and Q, K, V")
    st.dataframe(vp.tokens_table(sent.tokens))
    st.caption("The sentence is split into words and punctuation; each position gets a random embedding row "
               "(seeded, no training). Labels carry the position so repeated words stay distinct.")
    st.latex(r"Q = X\,W_{query},\quad K = X\,W_{key},\quad V = X\,W_{value}")
    st.latex(r"X \in \mathbb{R}^{T\times d_{in}},\ W_{query}, W_{key} \in \mathbb{R}^{d_{in}\times d_k},"
             r"\ W_{value} \in \mathbb{R}^{d_{in}\times d_v}")
    figures = vp.projection_figures(steps, sent.labels)
    for tab, name in zip(st.tabs(["Q = X W_query", "K = X W_key", "V = X W_value"]), "QKV", strict=True):
        with tab:
            product_row(*figures[name], key=f"pg_chart_{name}")
    st.caption(f"The weights are stored as (d_in × d_out) = ({c['d_in']} × d_k) or ({c['d_in']} × d_v), so "
               "Q = X W_query needs no transpose. Each row of Q, K, V belongs to one token. "
               "d_q must equal d_k (they meet in a dot product); d_v is free.")


def section_scores(sent: teaching.Sentence, steps: teaching.SelfAttentionSteps) -> None:
    st.header("2. Scores, weights and context vectors")
    st.latex(r"\omega = Q K^\top,\qquad \alpha = \mathrm{softmax}\!\left(\frac{\omega}{\sqrt{d_k}}\right)"
             r"\ \text{(row by row)},\qquad Z = \alpha V")
    scores, context = vp.score_figures(steps, sent.labels)
    product_row(*scores, key="pg_chart_omega")
    st.caption("Each score ω_ij is the dot product of query i with key j: how well token i's question matches "
               "token j's label. Red is positive, blue negative.")
    product_row(*context, key="pg_chart_z")
    st.caption("Softmax turns each row of scores into weights between 0 and 1 that sum to 1. Each context "
               "vector z_i is the weighted average of the value rows, weighted by row i of α.")


def section_query(sent: teaching.Sentence, steps: teaching.SelfAttentionSteps) -> None:
    T = len(sent.tokens)
    st.header("3. One query, spelled out")
    # always valid, whatever was stored (a shorter sentence, a value of another type)
    i = state.selectbox("Query token", list(range(T)), key="pg_query", default=min(1, T - 1),
                        format_func=lambda j: sent.labels[j])
    b = teaching.query_breakdown(steps, i)
    n = i  # positions are 0-based everywhere, as in the inspector
    for formula in vp.query_formulas(b, steps.K[0], steps.scale, show_row=T <= 10):
        st.latex(formula)
    st.dataframe(vp.query_table(b, sent.labels), hide_index=True)
    st.caption(f"α_{n} is one softmax over the whole row ω_{n} (divided by √d_k = {np.sqrt(steps.d_k):.3g}"
               f"{'' if steps.scale else ', here switched off'}), not a softmax of each score on its own; "
               "that is why the weights of a row sum to 1.")
    chart(vp.query_weights_figure(b.weights, sent.labels, sent.labels[i]), "pg_chart_query_bar")
    st.dataframe(vp.weighted_values_table(b).style.format("{:.4f}"))
    agree = "exactly" if b.max_abs_diff == 0 else f"up to {b.max_abs_diff:.1e} (float rounding)"
    st.caption(f"z_{n} is the α-weighted sum of the value vectors. Summed here by hand it matches the row from "
               f"attention() {agree}.")


def section_masking(sent: teaching.Sentence, steps: teaching.SelfAttentionSteps, c: dict) -> None:
    labels = sent.labels
    st.header("4. Causal masking")
    diagonal = c["diagonal"]
    st.latex(rf"M = \mathrm{{triu}}(\mathbf{{1}}_{{T\times T}},\ \mathrm{{diagonal}}={diagonal}),\qquad "
             r"\alpha = \mathrm{softmax}\big(\mathrm{where}(M, -\infty, \omega/\sqrt{d_k})\big)")
    mc = teaching.compare_masking(steps.Q, steps.K, steps.V, diagonal, steps.scale)
    mask, before, after = vp.masking_figures(mc, labels, diagonal)
    cols = st.columns(2)
    with cols[0]:
        chart(mask, "pg_chart_mask")
        st.caption("Hatched grey cells are the keys a query may not see; they are filled with −∞ before softmax "
                   "(the same grey as in the inspector).")
    with cols[1]:
        chart(before, "pg_chart_mask_before")
        st.caption("−∞ becomes exactly 0 after exp, so the remaining weights already sum to 1.")
    cols = st.columns(2)
    with cols[0]:
        chart(after, "pg_chart_mask_after")
        st.caption("The other way: softmax over all keys, zero the future, divide each row by its new sum.")
    cols[1].metric("max |before − after|", f"{mc.max_abs_diff:.2e}")
    st.caption("Both ways give the same weights (up to float rounding): exp(−∞) = 0 simply drops the future "
               "terms from the softmax's sum, and renormalising afterwards divides by that same partial sum.")
    if diagonal == 1:
        st.success("diagonal=1: the mask covers only the strict future; every token still sees itself.")
    elif diagonal > 1:
        st.warning(f"diagonal={diagonal}: tokens may see {diagonal - 1} future token(s): the mask leaks the "
                   "answer during training.")
    if diagonal <= 0:
        st.error(f"diagonal={diagonal}: the mask also covers the diagonal{' and below' if diagonal < 0 else ''}, "
                 "so every token loses itself, and query row(s) "
                 f"{', '.join(labels[r] for r in mc.empty_rows) or 'none'} have no key left at all.")
        if mc.nan_rows:
            st.markdown("A plain softmax of a row that is all −∞ computes exp(−∞) / Σ exp(−∞) = 0 / 0 = **NaN**, "
                        "and that NaN spreads into every later layer. The naive result:")
            st.dataframe(vp.naive_table(mc.naive, labels))
            st.info("How this app handles it: model.core.attention.attention() gives a query whose keys are all "
                    "masked zero weights (and a zero context vector) instead of NaN, as in the charts above. "
                    "The real fix is diagonal=1.")


def section_scaling(steps: teaching.SelfAttentionSteps, sent: teaching.Sentence, c: dict) -> None:
    st.header("5. Why divide by √d_k")
    st.latex(r"q, k \sim \mathcal{N}(0, I_{d_k}) \Rightarrow \mathrm{Var}(q\cdot k) = d_k,\qquad "
             r"\mathrm{Var}\!\left(\frac{q\cdot k}{\sqrt{d_k}}\right) = 1")
    curve = teaching.scaling_curve(list(teaching.CURVE_D_KS), len(sent.tokens), c["seed"])
    chart(vp.scaling_curve_figure(curve, c["d_k"]), "pg_chart_scaling")
    st.caption(f"Random queries and keys with unit-variance entries, {curve.n_keys} keys per row, averaged over "
               f"{curve.n_samples} seeds. Unscaled scores grow like √d_k, so softmax saturates: one key takes "
               "almost all the weight (entropy → 0, max weight → 1) and gradients vanish. Divided by √d_k, "
               "rows stay spread out at every width. The dotted line is your current d_k.")


def section_cross(sent: teaching.Sentence, X, c: dict) -> None:
    st.header("6. Cross-attention")
    if not st.toggle("Show cross-attention", True, key="pg_cross"):
        st.caption("Switched off.")
        return
    col1, col2 = st.columns([3, 1])
    text2 = col1.text_input("Second sentence (keys and values)", DEFAULT_SENTENCE_2, key="pg_sentence2",
                            max_chars=2000)
    d_in2 = col2.slider("d_in2", 1, 32, 5, key="pg_d_in2")
    sent2 = teaching.tokenize(text2)
    if not sent2.tokens:
        st.info("Type a second sentence (it needs at least one word or punctuation mark).")
        return
    if sent2.truncated:
        st.warning(f"The second sentence has {sent2.n_tokens} tokens; only the first {teaching.MAX_TOKENS} are used.")
    X2 = teaching.embed(len(sent2.tokens), d_in2, c["seed"], name="X2")
    cr = teaching.cross_attention(X, X2, c["d_k"], c["d_v"], c["seed"], scale=c["scale"])
    T1, T2 = len(sent.tokens), len(sent2.tokens)
    st.latex(rf"Q = X_1 W_{{query}}\ ({T1}\times{c['d_k']}),\quad K = X_2 W_{{key}}\ ({T2}\times{c['d_k']}),\quad "
             rf"V = X_2 W_{{value}}\ ({T2}\times{c['d_v']})")
    st.latex(rf"\alpha = \mathrm{{softmax}}(QK^\top/\sqrt{{d_k}})\ "
             rf"({T1}\times{T2})")
    figures = vp.cross_figures(cr, sent.labels, sent2.labels)
    for i, (fig, key) in enumerate(zip(figures, ("x2", "k", "alpha", "z"), strict=True)):
        if i % 2 == 0:
            cols = st.columns(2)
        chart(fig, f"pg_chart_cross_{key}", cols[i % 2])
    st.caption(f"Queries come from sentence 1 ({T1} tokens, d_in={c['d_in']}), keys and values from sentence 2 "
               f"({T2} tokens, d_in2={d_in2}). The lengths and even the embedding widths may differ: only d_q = d_k "
               f"must match, because q·k is a dot product. The weights are {T1} × {T2}; the output has one row per "
               "query, like a decoder attending to the encoder.")


def section_multihead(sent: teaching.Sentence, X, c: dict) -> None:
    st.header("7. Multi-head attention")
    labels = sent.labels
    col1, col2 = st.columns(2)
    n_heads = col1.slider("Heads", 1, 8, 2, key="pg_heads")
    common = col2.toggle("d_head = d_model // heads", True, key="pg_common_dhead",
                         help="Off: every head uses the d_k and d_v from the sidebar.")
    d_model = c["d_in"]
    d_k, d_v = teaching.head_widths(d_model, n_heads, c["d_k"], c["d_v"], split=common)
    if common and d_model % n_heads:
        st.warning(f"d_model = {d_model} is not divisible by {n_heads} heads: each head gets {d_k} dims and the "
                   f"concatenation is {n_heads * d_k} wide, not {d_model}. Real models require d_model % n_heads == 0.")
    mh = teaching.multi_head(X, n_heads, d_k, d_v, c["seed"], causal=c["causal"], diagonal=c["diagonal"],
                             scale=c["scale"])
    st.latex(r"\mathrm{head}_h = \mathrm{softmax}\!\left(\frac{X W^{(h)}_{query} (X W^{(h)}_{key})^\top}"
             r"{\sqrt{d_k}}\right) X W^{(h)}_{value}")
    st.latex(r"\mathrm{out} = "
             rf"[\mathrm{{head}}_1, \dots, \mathrm{{head}}_{{{n_heads}}}]\, W_{{out}}")
    st.markdown(f"d_model = {d_model}, heads = {n_heads}, d_k = {d_k}, d_v = {d_v} per head "
                f"→ concat: T × n·d_v = {len(labels)} × {n_heads * d_v}, W_out: {n_heads * d_v} × {d_model}, "
                f"output: {len(labels)} × {d_model}.")
    weights, outputs, projection = vp.multi_head_figures(mh, labels)
    chart(weights, "pg_chart_heads_alpha")
    st.caption("Each head has its own W_query, W_key and W_value, so each learns (here: draws) its own pattern.")
    chart(outputs, "pg_chart_heads_z")
    product_row(*projection, key="pg_chart_mh")
    st.caption("The heads' outputs are put side by side and the output projection W_out mixes them back to "
               "d_model, so a block's output has the same width as its input. The common choice "
               "d_head = d_model // n_heads keeps the cost of n heads close to one full-width head.")


def main() -> None:
    st.title("Attention playground")
    boot.configure_once()
    st.caption("Self-attention step by step with small seeded random matrices (no trained model), after "
               "Sebastian Raschka's \"Understanding and coding self-attention\". Every control updates at once; "
               "every weight shown comes from the model's own attention() function.")
    c = sidebar_controls()
    sent = teaching.tokenize(c["sentence"])
    if not sent.tokens:
        st.info("Type a sentence in the sidebar: it needs at least one word or punctuation mark.")
        return
    if sent.truncated:
        st.warning(f"The sentence has {sent.n_tokens} tokens; only the first {teaching.MAX_TOKENS} are used "
                   "so the heatmaps stay readable.")
    if len(sent.tokens) == 1:
        st.info("Only one token: it can only attend to itself, so every weight is 1. Try a longer sentence.")
    X = teaching.embed(len(sent.tokens), c["d_in"], c["seed"])
    steps = teaching.self_attention(X, c["d_k"], c["d_v"], c["seed"], causal=c["causal"], diagonal=c["diagonal"],
                                    scale=c["scale"])
    section_qkv(sent, steps, c)
    section_scores(sent, steps)
    section_query(sent, steps)
    section_masking(sent, steps, c)
    section_scaling(steps, sent, c)
    section_cross(sent, X, c)
    section_multihead(sent, X, c)
    st.header("8. Watch attention learn")
    st.markdown("These matrices are random. To see what training makes of attention, open the **Attention "
                "inspector**, pick the model **induction** and the **Training** view: a previous-token head and an "
                "induction head form together around step 500-1000 of training, and the loss on repeated words "
                "collapses. The **dates** model's snapshots show its cross-attention learning to align digits.")


main()
