"""docs/notebook.ipynb, the example notebook, run from top to bottom by nbclient in a fresh kernel (as CI runs it):
no cell fails, each widget cell displays a widget, and what the notebook prints is what the models compute. The
notebook is stored without outputs (clean diffs; what it shows is what a fresh run gives)."""

from __future__ import annotations

import json

import pytest

from tests.e2e_support import ROOT

NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


def test_the_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_the_example_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports the repository's packages (it starts in tmp)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    widgets = [o for o in outputs if o.output_type in ("display_data", "execute_result") and WIDGET in o.data]
    assert len(widgets) == 3  # the dates model, the induction model, the tiny GPT-2
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "2026-11-21" in text  # the dates model's output, from the trace the notebook reads
    assert "every cell of every head is exact in this file" in text
