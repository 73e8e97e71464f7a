"""Entry point: `streamlit run app.py`. Opens on the attention inspector; other pages sit beside it."""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="Attention inspector", page_icon=":material/search:", layout="wide")

pages = [st.Page(str(HERE / "pages" / "inspector.py"), title="Attention inspector", icon=":material/search:",
                 default=True)]
if (HERE / "pages" / "playground.py").is_file():  # the teaching playground, when it has landed
    pages.append(st.Page(str(HERE / "pages" / "playground.py"), title="Teaching playground", icon=":material/school:"))

st.navigation(pages).run()
