"""The corpus atlas: every head's statistics over a corpus (a database built by ``python -m model.atlas``), with
drill-down into the inspector.

Thin page: the database and run in the sidebar, the views from ui/atlas/ (queries in model/atlas/queries.py,
figures in viz/atlas.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/atlas.py` / AppTest.from_file
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from model.atlas.identity import AtlasError  # noqa: E402
from ui.atlas.page import atlas_page  # noqa: E402
from ui.text import md, short  # noqa: E402

try:
    atlas_page()
except AtlasError as e:  # a database another process is writing, or one that is not an atlas
    st.error(md(short(e, 600)))
