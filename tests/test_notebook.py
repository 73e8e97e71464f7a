"""viz.notebook (the widget's kernel side, without a browser) and viz.standalone (the file it writes): every model
form traces, the widget's state is small and binary, and what it sends the page for a view, a head, a row or a
picker is what the trace holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model import CaptureBudget
from tests.conftest import CHECKPOINTS
from viz import map_parts, standalone, wire

nb = pytest.importorskip("viz.notebook")
DATES_TEXT = "Saturday, November 21, 2026"


def listen(widget) -> list[tuple[dict, list[dict]]]:
    """What the widget sends the page from now on: (content, unpacked parts)."""
    sent: list = []
    widget.send = lambda content, buffers=None: sent.append((content, [wire.unpack(b) for b in buffers or []]))
    return sent


def parts(sent) -> list[dict]:
    return [p for _, ps in sent for p in ps]


@pytest.fixture(scope="module")
def widget(dates):
    return nb.show(dates, DATES_TEXT)


def test_every_model_form_traces_the_same_call(dates, tmp_path):
    by_path = nb.trace(CHECKPOINTS / "dates", DATES_TEXT, device="cpu")
    by_pipe = nb.trace(dates, DATES_TEXT)
    assert nb.trace(by_pipe) is by_pipe  # a finished RunResult is taken as it is
    name = "decoder.1.cross_attn"
    for res in (by_path, by_pipe):
        assert res.output_text == "2026-11-21"
    assert np.array_equal(by_path.trace.window(name, 3, range(11), range(11)).values,
                          by_pipe.trace.window(name, 3, range(11), range(11)).values)
    with pytest.raises(ValueError, match="already traced"):
        nb.trace(by_pipe, "another text")
    with pytest.raises(ValueError, match="give the text"):
        nb.trace(dates)
    with pytest.raises(TypeError, match="cannot trace a int"):
        nb.trace(3, "text")
    assert nb.show(by_pipe).result is by_pipe


def test_a_transformers_model_the_notebook_holds(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tests import hf_models

    path = hf_models.build("gpt2", tmp_path / "gpt2")
    model = transformers.GPT2LMHeadModel.from_pretrained(path)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
    impl, hooks = model.config._attn_implementation, len(model.transformer.h[0].attn._forward_pre_hooks)
    w = nb.show((model, tokenizer), "the cat sat on the mat")
    assert (model.config._attn_implementation, len(model.transformer.h[0].attn._forward_pre_hooks)) == (impl, hooks)
    assert w.name == "decoder.1.self_attn" and w.result.target.ids == tokenizer("the cat sat on the mat")["input_ids"]


def test_the_state_is_small_and_binary(widget):
    state = widget.get_state()
    assert isinstance(state["overview"], bytes)  # one binary buffer: the overview part, packed
    part = wire.unpack(state["overview"])
    assert part["part"] == "overview" and part["tiles"].shape == (4, 11, 11)
    small = {k: v for k, v in state.items() if k not in ("_esm", "_css", "overview")}
    assert len(json.dumps(small, default=str)) < 4_000  # kilobytes

    def longest_number_list(x) -> int:
        if isinstance(x, dict):
            return max((longest_number_list(v) for v in x.values()), default=0)
        if isinstance(x, (list, tuple)):
            own = len(x) if x and all(isinstance(v, (int, float)) for v in x) else 0
            return max([own, *(longest_number_list(v) for v in x)])
        return 0
    assert longest_number_list(small) <= 4  # no number lists: the view's four numbers at most


def test_what_the_page_asks_for_is_the_trace(widget):
    trace, name = widget.result.trace, widget.name
    sent = listen(widget)
    widget._on_msg(widget, {"type": "ready"}, [])  # a view opened: Python's head and view, then their detail
    sync, detail = parts(sent)
    assert sync["part"] == "sync" and sync["head"] == widget.head and detail["part"] == "detail"
    sent.clear()
    widget.view = {"r0": 2, "r1": 9, "c0": 1, "c1": 7}
    widget.head = 2
    widget.query = 4
    first, second, row = parts(sent)
    assert (first["head"], second["head"]) == (0, 2) and first["view"] == widget.view
    want = trace.window(name, 2, range(2, 9), range(1, 7)).values
    assert second["tile"]["pool"] == 1 and np.array_equal(second["tile"]["values"], want)  # exact cells
    exact = trace.row(name, 2, 4)
    assert row["part"] == "row" and np.array_equal(row["weights"], exact.weights)
    assert np.array_equal(row["top_keys"], exact.top_keys.astype(np.uint32))
    sent.clear()
    widget.view = dict(widget.view)  # the same view again: nothing recomputed
    assert parts(sent) == []


def test_pickers_send_a_new_overview(widget):
    sent = listen(widget)
    before = widget.overview
    widget.stage = "scores"
    assert widget.overview != before
    ov = wire.unpack(widget.overview)
    assert ov["colormap"] == "rdbu_r" and ov["title"].endswith("scores")
    detail = [p for p in parts(sent) if p["part"] == "detail"][-1]
    assert detail["overview"] == ov["id"]
    widget.name = "encoder.0.self_attn"
    assert wire.unpack(widget.overview)["n_rows"] == len(widget.result.source.tokens)
    with pytest.raises(Exception, match="no attention"):
        widget.name = "decoder.9.self_attn"
    with pytest.raises(Exception, match="no stage"):
        widget.stage = "adjusted"
    with pytest.raises(Exception, match="not one of"):
        widget.head = 99
    widget.name, widget.stage = "decoder.1.cross_attn", "weights"


def test_a_failing_answer_goes_to_the_page(widget, monkeypatch):
    sent = listen(widget)

    def broken(*a, **k):
        raise RuntimeError("no such window")
    monkeypatch.setattr(map_parts, "detail_part", broken)
    widget.view = {"r0": 0, "r1": 3, "c0": 0, "c1": 3}
    assert sent[-1][0] == {"type": "error", "message": "RuntimeError: no such window"}


def test_a_long_lazy_trace_sends_pooled_then_exact_details(induction):
    text = " ".join("abcdefghijklmnopqrst"[i % 20] for i in range(40))
    w = nb.show(induction, text, mode="lazy", budget=CaptureBudget(full_bytes=0))
    assert w.result.mode == "lazy"
    sent = listen(w)
    w.view = {"r0": 3, "r1": 20, "c0": 0, "c1": 20}
    (detail,) = parts(sent)
    want = w.result.trace.window(w.name, 0, range(3, 20), range(0, 20)).values
    np.testing.assert_array_equal(detail["tile"]["values"], want)


# ---- the standalone file

def test_the_exact_cells_budget():
    assert standalone.exact_plan(12, 256, 256, 5, None) == (list(range(12)), None)  # 12 x 65,536 cells fit
    assert standalone.exact_plan(12, 512, 512, 5, None) == ([0, 1, 2, 5], None)  # the chosen head, then in order
    assert standalone.exact_plan(12, 1024, 1024, 5, None) == ([5], None)  # one whole head: 1,048,576 cells
    heads, window = standalone.exact_plan(12, 4096, 4096, 5, {"r0": 1000, "r1": 3000, "c0": 0, "c1": 4096})
    assert heads == [] and window == {"head": 5, "r0": 1488, "r1": 2512, "c0": 1536, "c1": 2560}
    assert (window["r1"] - window["r0"]) * (window["c1"] - window["c0"]) <= standalone.EXACT_CELLS


def test_the_file_holds_everything_and_fetches_nothing(widget, tmp_path):
    out = widget.save_html(tmp_path / "map.html", caption="the dates model")
    text = (tmp_path / "map.html").read_text(encoding="utf-8")
    assert text == out.html and out.exact_heads == (0, 1, 2, 3) and "every cell of every head" in out.note
    assert "http://" not in text and "https://" not in text and "<link" not in text and " src=" not in text
    assert "connect-src 'none'" in text  # the page may not open a connection
    assert out.nbytes < 200_000


def test_the_widget_at_8192_tokens(tmp_path):
    from model import load
    from tests.test_long import T, long_text, tiny_long

    pipe = load(tiny_long(tmp_path / "llama", "llama"), "cpu")
    w = nb.show(pipe, long_text(pipe, T))
    assert w.result.mode == "lazy" and w.result.trace.shape(w.name).tq == T
    ov = wire.unpack(w.overview)
    assert ov["pool"] == 16 and ov["tiles"].shape == (4, 512, 512) and len(w.overview) < 2 * 2**20
    sent = listen(w)
    w._on_msg(w, {"type": "ready"}, [])
    whole = parts(sent)[-1]
    assert whole["part"] == "detail" and whole["skipped"]  # 8,192 x 8,192 cells in view: the overview's values
    w.view = {"r0": 4000, "r1": 4300, "c0": 3900, "c1": 4200}
    exact = parts(sent)[-1]["tile"]
    assert exact["pool"] == 1
    want = w.result.trace.window(w.name, 0, range(4000, 4300), range(3900, 4200)).values
    np.testing.assert_array_equal(exact["values"], want)
    out = w.save_html(tmp_path / "long.html")
    assert out.exact_heads == () and out.exact_window["head"] == 0 and out.nbytes < 4 * 2**20
    assert out.exact_window["r0"] <= 4000 and out.exact_window["r1"] >= 4300  # the view, whole, inside the budget
