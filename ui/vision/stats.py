"""The image page's statistics: every head's entropy and sink share, and each token's value and output norms beside
the attention it receives, with the high-norm tokens (model.analysis.tokens: over 4x the layer's median) called
out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from model import RecordName
from model.analysis.heads import head_table
from model.analysis.tokens import NORMS, OUTLIER_FACTOR, TokenNorms, token_norms
from model.core.rowstats import HUMAN_NAMES, STAT_DEFINITIONS
from viz import overlay

from .. import state
from ..text import md
from ..views.common import chart, four_decimals, table_downloads
from .calls import ImageCall
from .page import ImageSelection

HEAD_COLUMNS = ("entropy", "entropy_norm", "max_weight", "sink_share", "first_share")
RULE = f"a norm over {OUTLIER_FACTOR:g}× that norm's median over the layer's tokens"
RECEIVED = "attention received"


def head_statistics(call: ImageCall, sel: ImageSelection) -> pd.DataFrame:
    """Every head of the layer: entropy, normalised entropy, max weight, sink share and where the sink is."""
    name = call.names[sel.layer]
    table = call.traced.memo(("image-head-table", name), lambda: head_table(call.trace, [name]))
    out = table[["head", *HEAD_COLUMNS]].rename(columns=HUMAN_NAMES)
    out["sink"] = [f"{int(k)}·{call.labels[int(k)]}" for k in table["sink_key"]]
    return out


def layer_norms(call: ImageCall, sel: ImageSelection) -> TokenNorms:
    """model.analysis.token_norms of the selected layer, once per traced call."""
    name = call.names[sel.layer]
    return call.traced.memo(("image-norms", name), lambda: token_norms(call.trace, name))


def high_norm_by(norms: TokenNorms) -> list[str]:
    """Per position, which of its norms are high-norm ("value", "output", "value, output" or "")."""
    outliers = {of: set(norms.outliers(of=of)) for of in NORMS}
    return [", ".join(of for of in NORMS if i in outliers[of]) for i in range(len(norms.value))]


def norm_table(call: ImageCall, norms: TokenNorms) -> pd.DataFrame:
    """Per token: the attention it receives, its value and output norms (and each over its median), and which of
    them are high-norm."""
    columns = {"position": np.arange(call.n_tokens), "token": call.labels,
               "kind": ["not a patch" if call.patch_of(i) is None else "patch" for i in range(call.n_tokens)],
               RECEIVED: norms.received}
    for of in NORMS:
        values = norms.norms(of)
        if values is not None:
            columns[f"{of} norm"] = values
            columns[f"{of} / median"] = values / float(np.median(values))
    columns["high-norm"] = high_norm_by(norms)
    return pd.DataFrame(columns)


def statistics_section(call: ImageCall, sel: ImageSelection) -> None:
    name = call.names[sel.layer]
    layer = RecordName.parse(name).layer
    heads = head_statistics(call, sel)
    st.dataframe(heads, hide_index=True, column_config=four_decimals(heads),
                 height=35 * (min(len(heads), 16) + 1) + 3)
    st.caption("Per head of layer " + str(layer) + ", over every query: " + "; ".join(
        f"{HUMAN_NAMES[c]}: {STAT_DEFINITIONS[c]}" for c in ("entropy_norm", "sink_share")) + ".")
    norms = layer_norms(call, sel)
    table = norm_table(call, norms)
    shown = [of for of in NORMS if norms.norms(of) is not None]
    flagged = table["high-norm"] != ""
    chart(overlay.norms_figure(call.labels, norms.received, {f"{of} norm": norms.norms(of) for of in shown},
                               flagged.to_numpy(), thresholds={f"{of} norm": norms.threshold(of) for of in shown},
                               attention_name=RECEIVED,
                               title=f"Layer {layer}: the attention each token receives, and its norms"),
          "img_norms")
    if flagged.any():
        named = ", ".join(f"**{md(t)}** ({by}; receives {a:.3f})" for t, by, a in
                          zip(table["token"][flagged], table["high-norm"][flagged], table[RECEIVED][flagged],
                              strict=True))
        st.warning(f"High-norm tokens ({RULE}): {named}. A token that receives much attention but carries an unusual "
                   "value or output is a register or an artefact (Darcet et al. 2024), not necessarily what the model "
                   "looks at.")
    else:
        st.caption(f"No high-norm token in this layer ({RULE}: the dashed lines).")
    st.caption(f"Red bars: high-norm tokens. Attention received: the weight on that key, summed over the "
               f"{call.n_tokens} queries and averaged over heads (a key no query reads gets 0, one every query reads "
               f"alone gets {call.n_tokens}). Value norm: ‖v_j‖ over every head, the size of what a weight on that key "
               "carries (a large weight on a small value moves little). Output norm: the attention's output at the "
               "token (its heads through W_o), what this layer's attention adds to the token's residual stream.")
    of = state.radio("Over the picture", shown, key="img_norm_of", default=shown[0], horizontal=True,
                     format_func=lambda o: f"{o} norm") if len(shown) > 1 else shown[0]
    grid = overlay.patch_values(norms.norms(of), call.positions, call.grid)
    outliers = set(norms.outliers(of=of))
    marked = [n for n, p in enumerate(call.positions) if p in outliers]
    chart(overlay.overlay_figure(call.picture, grid, call.patch_labels, value_name=f"{of} norm", marked=marked,
                                 title=f"Layer {layer}: each patch's {of} norm (high-norm patches outlined)",
                                 height=420), "img_norm_overlay", theme=None, width="content")
    with st.expander("Every token's numbers"):
        st.dataframe(table, hide_index=True, column_config=four_decimals(table), height=300)
    table_downloads(table, "the token norms", f"norms-layer{layer}", "img_norms_csv",
                    meta={"rule": RULE, "thresholds": {f"{o} norm": norms.threshold(o) for o in shown}})
