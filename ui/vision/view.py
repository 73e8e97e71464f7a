"""The image page below the prediction, in a fragment (a change of selection reruns this part only)."""

from __future__ import annotations

import streamlit as st

from .. import state
from ..sidebar import ModelPick
from . import links
from .calls import ImageCall
from .inputs import Picture
from .page import head_grid_section, map_section, overlay_section, selection_row, sync_from_map
from .stats import statistics_section
from .whatif import whatif_section

SECTIONS = ("Head grid", "Attention map", "Statistics", "What if")  # under the overlay, one at a time


@st.fragment
def image_view(pick: ModelPick, call: ImageCall, picture: Picture) -> None:
    """Selection, then the overlay and the other sections."""
    links.apply_selection(call)
    links.show_notes()
    sync_from_map(call)
    sel, corner = selection_row(call)
    with corner:
        links.share(pick.base, picture, sel)
    overlay_section(call, sel)
    section = state.segmented_control("Below the picture", SECTIONS, key="img_section", default=SECTIONS[0],
                                      required=True) or SECTIONS[0]
    if section == "Head grid":
        head_grid_section(call, sel)
    elif section == "Attention map":
        map_section(pick, call, sel)
    elif section == "Statistics":
        statistics_section(call, sel)
    else:
        whatif_section(pick, call, picture, sel)
