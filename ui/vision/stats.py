"""The image page's statistics: every head's entropy and sink share, and each token's norm beside the attention it
receives, with the tokens that stand out (registers, high-norm tokens) called out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from model import RecordName
from model.analysis.heads import head_table
from model.analysis.patch_maps import HIGH_NORM_RATIO, high_norm, received, value_norms
from model.core.rowstats import HUMAN_NAMES, STAT_DEFINITIONS
from viz import overlay

from ..text import md
from ..views.common import chart, four_decimals, table_downloads
from .calls import ImageCall
from .page import ImageSelection

HEAD_COLUMNS = ("entropy", "entropy_norm", "max_weight", "sink_share", "first_share")


def head_statistics(call: ImageCall, sel: ImageSelection) -> pd.DataFrame:
    """Every head of the layer: entropy, normalised entropy, max weight, sink share and where the sink is."""
    name = call.names[sel.layer]
    table = call.traced.memo(("image-head-table", name), lambda: head_table(call.trace, [name]))
    out = table[["head", *HEAD_COLUMNS]].rename(columns=HUMAN_NAMES)
    out["sink"] = [f"{int(k)}·{call.labels[int(k)]}" for k in table["sink_key"]]
    return out


def token_norms(call: ImageCall, sel: ImageSelection) -> pd.DataFrame:
    """Per token of the layer: the weight it receives (mean over heads and queries), its value norm, and whether
    the norm stands out (model.analysis.patch_maps.high_norm)."""
    name = call.names[sel.layer]

    def compute() -> pd.DataFrame:
        norms = value_norms(call.traced.record(name))
        flagged, threshold = high_norm(norms, call.positions)
        grid = {p: divmod(n, call.grid[1]) for n, p in enumerate(call.positions)}
        return pd.DataFrame({
            "position": np.arange(call.n_tokens), "token": call.labels,
            "kind": ["patch" if i in grid else "not a patch" for i in range(call.n_tokens)],
            "attention received": received(call.trace, name), "value norm": norms,
            "x median patch": norms / np.median(norms[call.positions]), "flagged": flagged,
        }).assign(threshold=threshold)
    return call.traced.memo(("image-norms", name), compute)


def statistics_section(call: ImageCall, sel: ImageSelection) -> None:
    name = call.names[sel.layer]
    layer = RecordName.parse(name).layer
    heads = head_statistics(call, sel)
    st.dataframe(heads, hide_index=True, column_config=four_decimals(heads),
                 height=35 * (min(len(heads), 16) + 1) + 3)
    st.caption("Per head of layer " + str(layer) + ", over every query: " + "; ".join(
        f"{HUMAN_NAMES[c]}: {STAT_DEFINITIONS[c]}" for c in ("entropy_norm", "sink_share")) + ".")
    norms = token_norms(call, sel)
    threshold = float(norms["threshold"].iloc[0])
    flagged = norms[norms["flagged"]]
    chart(overlay.norms_figure(call.labels, norms["attention received"].to_numpy(), norms["value norm"].to_numpy(),
                               norms["flagged"].to_numpy(), threshold=threshold,
                               title=f"Layer {layer}: the attention each token receives, and its value's norm"),
          "img_norms")
    if len(flagged):
        named = ", ".join(f"**{md(t)}** ({r:.1f}× the median patch, receives {a:.3f})" for t, r, a in
                          zip(flagged["token"], flagged["x median patch"], flagged["attention received"], strict=True))
        st.warning(f"Tokens whose value norm stands out (over {HIGH_NORM_RATIO:g}× the median patch's): {named}. A "
                   "token that receives much attention but carries an unusual value is a register or an artefact "
                   "(Darcet et al. 2024), not necessarily what the model looks at.")
    else:
        st.caption(f"No token's value norm is over {HIGH_NORM_RATIO:g}× the median patch's (the dashed line).")
    st.caption("Red bars: flagged tokens. Attention received: the weight on that key, averaged over heads and query "
               "rows. Value norm: ‖v_j‖ over every head, the size of what a weight on that key carries "
               "(a large weight on a small value moves little).")
    grid = overlay.patch_values(norms["value norm"].to_numpy(), call.positions, call.grid)
    marked = [n for n, p in enumerate(call.positions) if norms["flagged"].iloc[p]]
    chart(overlay.overlay_figure(call.picture, grid, call.patch_labels, value_name="value norm", marked=marked,
                                 title=f"Layer {layer}: each patch's value norm (flagged patches outlined)",
                                 height=420), "img_norm_overlay", theme=None, width="content")
    table_downloads(norms.drop(columns="threshold"), "the token norms", f"norms-layer{layer}", "img_norms_csv",
                    meta={"threshold": threshold, "rule": f"norm > {HIGH_NORM_RATIO:g} x the median patch's"})
