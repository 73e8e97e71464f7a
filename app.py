"""Entry point: `streamlit run app.py`. Opens on the attention inspector; the teaching playground sits beside it.

This file is read twice. The server imports it and finds ``app`` (an ``st.App``): its start-up hook begins
importing torch and the app's modules while the browser loads the page (ui/boot.py). Each visit then runs it as
the page script (the ``else`` branch): set the page up and hand over to the pages, which paint their title
before they import anything heavy, so a cold start shows the page at once.
"""

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

HERE = Path(__file__).resolve().parent

if get_script_run_ctx(suppress_warning=True) is None:  # imported by the server, not run for a visitor
    from ui.boot import public_config
    from ui.warmup import warm_up

    public_config()  # INSPECTOR_PUBLIC=1: no error details in any page (docs/deploying.md)

    app = st.App(__file__, lifespan=warm_up)
else:
    from ui.boot import page_icon

    st.set_page_config(page_title="Attention inspector", page_icon=page_icon(), layout="wide")
    # less empty space above the title (Streamlit leaves 6rem): the first map fits the first screen at 1440 x 900
    st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 3rem; }</style>")
    # The pages live in app_pages/, not pages/: a pages/ folder next to st.navigation turns on Streamlit's older
    # folder-based routing too, and a visitor opening /playground directly got that page without this entry point.
    # Menu icons are drawn with the font Streamlit serves itself; the page icon is a local image (a ":material/:"
    # page icon makes the browser fetch an SVG from fonts.gstatic.com).
    pages = [st.Page(str(HERE / "app_pages" / "inspector.py"), title="Attention inspector",
                     icon=":material/search:", default=True),
             st.Page(str(HERE / "app_pages" / "images.py"), title="Image attention", icon=":material/image:"),
             st.Page(str(HERE / "app_pages" / "atlas.py"), title="Corpus atlas", icon=":material/travel_explore:"),
             st.Page(str(HERE / "app_pages" / "playground.py"), title="Teaching playground",
                     icon=":material/school:")]
    st.navigation(pages).run()
