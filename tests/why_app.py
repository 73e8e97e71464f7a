"""Test-only entry point: the app with the "Logit lens", "Patching" and "Knockout" views registered, until
ui/views registers them (docs/README_why.md says how).

    streamlit run tests/why_app.py      # the app, with the three views in the view picker
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WHY_VIEWS = ("Logit lens", "Patching", "Knockout")


def functions() -> dict:
    """View name -> view function, as ui/views registers views."""
    from ui.views.knockout import knockout_view
    from ui.views.lens import lens_view
    from ui.views.patching import patching_view

    return {"Logit lens": lens_view, "Patching": patching_view, "Knockout": knockout_view}


def register() -> None:
    """Add the three views to the inspector's picker and registry (idempotent)."""
    import ui.inspector
    import ui.views

    ui.views.VIEW_FUNCTIONS.update(functions())
    ui.inspector.VIEWS = tuple(dict.fromkeys((*ui.inspector.VIEWS, *WHY_VIEWS)))


if __name__ == "__main__":
    register()
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
