"""The image page below the prediction, in a fragment (a change of selection reruns this part only)."""

from __future__ import annotations

import streamlit as st

from .. import state
from ..page_types import ModelPick
from ..views.registry import HEAD_GRID, MAP, STATISTICS
from . import links
from .calls import ImageCall
from .inputs import Picture
from .page import head_grid_section, map_section, overlay_section, selection_row, sync_from_map
from .stats import statistics_section
from .whatif import whatif_section

WHAT_IF = "What if"
# under the overlay, one at a time; three are the image form of the inspector's views, and carry their names
SECTIONS = (HEAD_GRID.name, MAP.name, STATISTICS.name, WHAT_IF)


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
    if section == HEAD_GRID.name:
        head_grid_section(call, sel)
    elif section == MAP.name:
        map_section(pick, call, sel)
    elif section == STATISTICS.name:
        statistics_section(call, sel)
    else:
        whatif_section(pick, call, picture, sel)
