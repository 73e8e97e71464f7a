"""Safe to deploy: hostile input in every text box, hostile paths and checkpoints, injection, budgets, concurrent
sessions (issue 13). Everything through the app as users reach it (AppTest), or the loaders directly."""

import base64
import hashlib
import json
import os
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import streamlit.testing.v1.app_test as app_test
import torch
from conftest import clear_app_caches
from safetensors.torch import load_file, save_file
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest

from model import CheckpointError, TransformerPipeline, load, load_checkpoint
from model.safe.paths import PathPolicy, resolve_checkpoint_dir
from tests.hostile import forbid, public_policy, sparse_safetensors

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PLAYGROUND = str(ROOT / "app_pages" / "playground.py")
DATES = ROOT / "checkpoints" / "dates"

HOSTILE = [
    "", " ", "   \t\n  ", "\n\n\n", "a" * 10_000, "21 November 2026 " * 600,
    "😀", "🎉🎉🎉 21 November 2026 🎉", "👨‍👩‍👧‍👦", "مرحبا بالعالم", "שלום עולם 2026", "\u202eevil\u202c 21.11.2026",
    "zero\u200bwidth\u200cjoin\u200dx", "\ufeffBOM 2026/11/21", "\x00", "nul\x00in\x00the\x00middle",
    "\x01\x02\x03\x1b[31mred\x1b[0m", "\r\n\x0b\x0c", "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)">', "<b>bold</b> <i>it</i> </div></div>", "[link](javascript:alert(1))",
    "**bold** _it_ `code` # heading", "$\\frac{1}{0}$ \\begin{matrix} x \\end{matrix}", "$$\\def\\x{\\x}\\x$$",
    "{{7*7}} ${7*7} %s %d", "' OR 1=1 --", "ÆØÅ æøå ß ĳ ﬁ", "NOVEMBER 21, 2026", "x", "2",
    "漢字かなカナ 2026年11月21日", "\ud7ff\ue000\uffff", "      21      November      2026      ",
    ",,,,....////----", "0" * 300, '<a href="javascript:alert(1)">click</a>', "![x](http://example.com/x.png)",
    "`` ` `` ```", ":red[alert] :material/warning:", "=HYPERLINK(\"http://x\")",
]
# typed into the path boxes: too long, NUL, control characters, relative tricks, markdown
HOSTILE_PATHS = ["a" * 300, "x" * 5000, "/tmp/\x00evil", "\x07\x1b[31m", "../../../../etc", "~root/.ssh",
                 "![img](http://x/y.png)", "[link](javascript:alert(1))", "`code`", "/proc/self/environ", "/dev/zero",
                 "\\\\server\\share", "😀/😀", " "]


def test_corpus_is_big_enough():
    assert len(HOSTILE) >= 30 and len(set(HOSTILE)) == len(HOSTILE)


def decode(value):
    """A Plotly array as sent: a list, or a base64 typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            arr = arr.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
        return arr
    return value


RAW_HTML = ("<script", "<img", "<i>it", "<a ", "<a\"", "<b>b")  # raw tags: escaped text (&lt;img) is fine


def check_charts(at) -> int:
    """Every chart: numeric arrays finite, no raw HTML in any label, title or hover text. Returns the chart count."""
    n = 0
    for el in at.get("plotly_chart"):
        n += 1
        spec = json.loads(el.proto.spec)
        for trace in spec.get("data", []):
            if trace.get("fill") == "toself":  # mask outlines: None separates polygons
                continue
            for key in ("z", "x", "y", "customdata"):
                if key in trace:
                    arr = decode(trace[key])
                    if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
                        assert np.isfinite(arr).all() or key == "z", f"non-finite {key} in {trace.get('type')}"
                    elif isinstance(arr, list):
                        flat = np.array(arr, dtype=object).ravel()
                        nums = [v for v in flat if isinstance(v, float)]
                        assert all(np.isfinite(nums)), f"non-finite {key}"
        text = json.dumps(spec)
        for raw in RAW_HTML:
            assert raw not in text, f"raw HTML {raw!r} reached a chart"
    return n


def check_markdown(at) -> None:
    """No page text renders model- or user-derived markup: links, images, code spans, HTML. A backslash-escaped
    character is shown literally, so escaped markup is fine."""
    import re

    for el in list(at.markdown) + list(at.error) + list(at.warning) + list(at.info) + list(at.caption):
        value = re.sub(r"\\.", "_", el.value)  # what markdown will interpret
        for raw in ("<script", "onerror=", "](javascript", "![", "<a ", "`"):
            assert raw not in value, (raw, el.value[:200])


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    monkeypatch.delenv("INSPECTOR_PUBLIC", raising=False)
    monkeypatch.delenv("INSPECTOR_ALLOWED_ROOTS", raising=False)
    clear_app_caches()
    yield
    clear_app_caches()


# every text box of every page ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_hostile_inputs_in_the_inspector_text_boxes():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    for text in HOSTILE:
        at.session_state["source"] = text
        at.run()
        assert not at.exception, (text[:40], at.exception)
        if text.strip():
            assert check_charts(at) >= 1, text[:40]
        else:
            assert any("source" in i.value.lower() for i in at.info), "empty source: a friendly prompt"
        check_markdown(at)
    at.session_state["source"] = "21.11.2026"
    at.session_state["target_mode"] = "type a target (teacher forcing)"
    for text in HOSTILE[::3]:
        at.session_state["target"] = text
        at.run()
        assert not at.exception, (text[:40], at.exception)
        check_charts(at)
        check_markdown(at)


@pytest.mark.slow
def test_hostile_inputs_in_the_compare_boxes():
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["view"] = "Compare"
    at.run()
    for text in HOSTILE[::2]:
        at.session_state["cmp_source"] = text
        at.run()
        assert not at.exception, (text[:40], at.exception)
        check_charts(at)
        check_markdown(at)
    at.session_state["cmp_mode"] = "same input, another checkpoint"
    for text in HOSTILE_PATHS:
        at.session_state["cmp_path"] = text
        at.run()
        assert not at.exception, (text[:40], at.exception)
        check_markdown(at)


@pytest.mark.slow
def test_hostile_strings_in_the_checkpoint_path_box():
    at = AppTest.from_file(APP, default_timeout=120).run()
    before = at.get("plotly_chart")[0].proto.spec
    for text in HOSTILE_PATHS + HOSTILE[:20]:
        at.session_state["model_path"] = text
        at.run()
        assert not at.exception, (repr(text[:40]), at.exception)
        check_markdown(at)
        if text.strip():
            assert at.error or at.get("plotly_chart"), repr(text[:40])
        assert at.get("plotly_chart")[0].proto.spec == before  # the previous model stays on screen


@pytest.mark.slow
def test_hostile_inputs_in_the_playground():
    at = AppTest.from_file(PLAYGROUND, default_timeout=120).run()
    assert not at.exception
    for text in HOSTILE:
        at.session_state["pg_sentence"] = text
        at.run()
        assert not at.exception, (text[:40], at.exception)
        check_charts(at)
    for text in HOSTILE[::4]:
        at.session_state["pg_sentence2"] = text
        at.run()
        assert not at.exception, (text[:40], at.exception)
        check_charts(at)


def test_every_text_box_has_a_server_side_character_limit():
    """Streamlit enforces max_chars on the server: a pasted megabyte never reaches the tokenizer."""
    boxes = {}
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["target_mode"] = "type a target (teacher forcing)"
    at.run()
    at.session_state["view"] = "Compare"
    at.run()
    at.session_state["cmp_mode"] = "same input, another checkpoint"
    at.run()
    for el in list(at.get("text_area")) + list(at.get("text_input")):
        boxes[el.key] = el.proto.max_chars
    pg = AppTest.from_file(PLAYGROUND, default_timeout=120).run()
    for el in list(pg.get("text_area")) + list(pg.get("text_input")):
        boxes[el.key] = el.proto.max_chars
    assert {"source", "target", "model_path", "cmp_path", "pg_sentence", "pg_sentence2"} <= set(boxes)
    # the inputs a long-context model reads are capped by the deployment's MAX_SOURCE_CHARS, every other box tighter
    from ui.page_types import MAX_SOURCE_CHARS

    long_boxes = {"source", "cmp_source", "patch_source"}
    assert all(0 < v <= MAX_SOURCE_CHARS for k, v in boxes.items() if k in long_boxes), boxes
    assert all(0 < v <= 50_000 for k, v in boxes.items() if k not in long_boxes), boxes


def test_a_huge_source_is_cut_before_the_tokenizer_sees_it(monkeypatch):
    from model.own import tokenizer as tok_module

    seen = []
    original = tok_module.Tokenizer.tokenize

    def spy(self, text, *a, **k):
        result = original(self, text, *a, **k)
        seen.append(len(text))
        return result

    original_hf = tok_module.call_tokenizer
    monkeypatch.setattr(tok_module, "call_tokenizer", lambda fn, *a, **k: (
        seen.append(len(a[0]) if a and isinstance(a[0], str) else 0), original_hf(fn, *a, **k))[1])
    pipe = load(DATES, "cpu")
    enc = pipe.tokenize_source("21 November 2026 " * 200_000)  # 3.4 MB
    assert enc.truncated and enc.chars_cut and len(enc.ids) == pipe.config.max_len
    assert max(seen) <= 1_000 + 256 * pipe.config.max_len
    del spy


# paths --------------------------------------------------------------------------------------------------------------

def test_any_string_in_a_path_box_ends_in_a_message(tmp_path):
    policy = PathPolicy()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    cases = {"a" * 300: "no such", "a/" * 600: "characters long", "x\x00y": "control characters", "": "empty",
             str(fifo): "not a directory", str(loop): "symlink loop", str(a_file): "not a directory",
             "/dev/null": "not a directory", str(tmp_path / "missing"): "no such"}
    if os.geteuid() != 0:  # root reads any directory
        cases[str(locked)] = "permission"
    for text, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            resolve_checkpoint_dir(text, policy)
    locked.chmod(0o700)


def test_a_directory_of_100000_files_is_never_listed(tmp_path, monkeypatch):
    """Checking a typed directory stats the checkpoint's known file names only."""
    big = tmp_path / "big"
    big.mkdir()
    for i in range(100_000):
        os.close(os.open(big / f"f{i}", os.O_CREAT | os.O_WRONLY))
    from model.own.checkpoint import stamp

    listed = []
    real_scandir, real_listdir = os.scandir, os.listdir
    monkeypatch.setattr(os, "scandir", lambda p=".": (listed.append(str(p)), real_scandir(p))[1])
    monkeypatch.setattr(os, "listdir", lambda p=".": (listed.append(str(p)), real_listdir(p))[1])
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: (stats.append(str(p)), real_stat(p, *a, **k))[1])
    assert stamp(big) == 0.0
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load(big, "cpu")
    monkeypatch.setattr(os, "stat", real_stat)
    assert str(big) not in listed  # never listed
    assert len(stats) < 100  # a few stats of known file names, never one per file of the 100,000


def test_public_setup_restricts_paths_and_reveals_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    policy = PathPolicy.from_env(ROOT / "checkpoints", None)
    assert policy.restricted and policy.public
    assert resolve_checkpoint_dir(str(DATES), policy) == DATES.resolve()
    messages = set()
    for outside in ("/etc", "/definitely/not/here", str(tmp_path), "/proc/self", str(DATES) + "/../../.."):
        with pytest.raises(CheckpointError) as e:
            resolve_checkpoint_dir(outside, policy)
        messages.add(str(e.value).split(": ", 1)[1])
    assert messages == {"not an allowed checkpoint directory"}  # the same whether or not the path exists
    escape = tmp_path / "escape"
    escape.symlink_to("/etc")  # a symlink inside a root that points out of it is resolved first
    inside_root = DATES / "escape_link"
    try:
        inside_root.symlink_to("/etc")
        with pytest.raises(CheckpointError, match="not an allowed"):
            resolve_checkpoint_dir(str(inside_root), policy)
    finally:
        inside_root.unlink(missing_ok=True)


def test_public_setup_in_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    at = AppTest.from_file(APP, default_timeout=120).run()
    for outside in ("/etc", "/nope", str(tmp_path)):
        at.session_state["model_path"] = outside
        at.run()
        assert not at.exception
        assert "not an allowed checkpoint directory" in at.error[0].value.replace("\\", "")
        assert "allowed:" not in at.error[0].value  # the roots are not listed to visitors either


# hostile checkpoints ------------------------------------------------------------------------------------------------

@pytest.fixture()
def copy(tmp_path):
    dst = tmp_path / "ck"
    shutil.copytree(DATES, dst, ignore=shutil.ignore_patterns("snapshots"))
    return dst


def edit_json(path: Path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("field, value", [("max_len", 4_000_000), ("d_model", 2**20), ("n_encoder_layers", 100_000),
                                          ("src_vocab_size", 10**9)])
def test_huge_sizes_in_config_are_refused_before_anything_is_allocated(copy, field, value, monkeypatch):
    import model.own.checkpoint as checkpoint

    edit_json(copy / "config.json", **{field: value})
    forbid(monkeypatch, checkpoint, "Transformer")  # no model is built, no weight is read, before the refusal
    forbid(monkeypatch, checkpoint, "load_file")
    with pytest.raises(CheckpointError, match=rf"config\.json.*{field}"):
        load_checkpoint(copy)


def test_sizes_within_bounds_but_not_the_weights_are_refused_from_the_header(copy):
    edit_json(copy / "config.json", max_len=60_000)  # the weights hold 32 positions
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch.*positions"):
        load_checkpoint(copy)


def test_deeply_nested_json(copy):
    (copy / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"meta\.json.*nested"):
        load_checkpoint(copy)
    (copy / "meta.json").write_text("{}")
    (copy / "config.json").write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(CheckpointError, match=r"config\.json.*nested"):
        load_checkpoint(copy)


def test_a_5000_digit_integer_in_meta(copy):
    (copy / "meta.json").write_text('{"steps": ' + "9" * 5000 + "}")
    with pytest.raises(CheckpointError, match=r"meta\.json.*not valid JSON"):
        load_checkpoint(copy)


def test_float8_weights(copy):
    state = load_file(str(copy / "model.safetensors"))
    state = {k: v.to(torch.float8_e4m3fn) for k, v in state.items()}
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*F8"):
        load_checkpoint(copy)


def test_a_tokenizer_id_beyond_the_vocabulary(copy):
    spec = json.loads((copy / "target_tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    victim = next(k for k, v in vocab.items() if v == max(vocab.values()))
    vocab[victim] = 10_000
    (copy / "target_tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=r"target_tokenizer\.json"):
        load_checkpoint(copy)


def test_a_tokenizer_that_panics_in_rust(copy):
    """A tokenizer.json whose truncation stride is not below its max length makes the Rust library panic (a
    BaseException, which used to blank the page)."""
    spec = json.loads((copy / "source_tokenizer.json").read_text())
    spec["truncation"] = {"direction": "Right", "max_length": 1, "strategy": "LongestFirst", "stride": 5}
    (copy / "source_tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=r"source_tokenizer\.json.*fails on ordinary text"):
        load_checkpoint(copy)


def test_special_ids_that_disagree_with_the_tokenizer(copy):
    edit_json(copy / "config.json", pad_id=4)
    with pytest.raises(CheckpointError, match=r"config\.json.*pad_id=4.*maps \[PAD\] to id 0"):
        load_checkpoint(copy)


def test_markdown_and_html_in_config_values_are_shown_as_text(copy):
    """Config values echoed in the error used to render markdown images and links."""
    edit_json(copy / "config.json", activation='![img](http://evil.example/x.png) [link](javascript:alert(1)) <a '
                                               'href="x">a</a> `code`')
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["model_path"] = str(copy)
    at.run()
    assert not at.exception
    check_markdown(at)
    message = at.error[0].value
    assert "\\!\\[img\\]" in message and "\\`code\\`" in message  # escaped: shown literally


def test_an_output_with_a_backtick_cannot_break_out_of_the_header(monkeypatch):
    from model import RunResult

    original = TransformerPipeline.run

    def sneaky(self, *args, **kwargs):
        import dataclasses

        res = original(self, *args, **kwargs)
        return dataclasses.replace(res, output_text="`](javascript:alert(1)) ![x](http://e/x.png) <a href=x>")

    monkeypatch.setattr(TransformerPipeline, "run", sneaky)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    check_markdown(at)
    del RunResult


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["pickle", "truncated", "mismatched"])
def test_untrusted_or_broken_checkpoint_in_the_app(tmp_path, damage):
    bad = tmp_path / "bad"
    shutil.copytree(DATES, bad, ignore=shutil.ignore_patterns("snapshots"))
    marker = tmp_path / "code-ran"
    weights = bad / "model.safetensors"
    if damage == "pickle":
        weights.write_bytes(pickle.dumps(_Exploit(str(marker))))
        torch.save({"x": _Exploit(str(marker))}, bad / "pytorch_model.bin")  # a tempting neighbour
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        cfg = json.loads((bad / "config.json").read_text())
        cfg["d_ff"] *= 2
        (bad / "config.json").write_text(json.dumps(cfg))
    at = AppTest.from_file(APP, default_timeout=120).run()
    first = json.loads(at.get("plotly_chart")[0].proto.spec)
    at.session_state["model_path"] = str(bad)
    at.run()
    assert not at.exception
    assert at.error, "an error box names the problem"
    message = at.error[0].value.replace("\\", "")
    assert ("config.json" in message or "model.safetensors" in message) and str(bad) in message
    assert not marker.exists(), "the pickle ran"
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"] == first["data"][0]["z"]
    at.session_state["source"] = "3.4.1999"
    at.run()
    assert not at.exception and at.get("plotly_chart")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# budgets ------------------------------------------------------------------------------------------------------------

def test_the_whole_trace_export_is_bounded(monkeypatch):
    monkeypatch.setenv("INSPECTOR_MAX_EXPORT_MB", "0.01")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["view"] = "Export"
    at.run()
    assert not at.exception
    text = " ".join(c.value for c in at.caption) + " ".join(w.value for w in at.warning)
    assert "export budget" in text
    assert "dl_trace" not in [b.key for b in at.get("download_button")]


def test_greedy_decoding_time_is_bounded(monkeypatch):
    import model.call as call

    monkeypatch.setattr(call, "DECODE_SECONDS", 0.0)
    pipe = load(DATES, "cpu")
    res = pipe.run("21 November 2026")
    assert res.stopped == "time" and res.generated


# concurrency --------------------------------------------------------------------------------------------------------

def parameters_digest(pipe: TransformerPipeline) -> str:
    h = hashlib.sha256()
    for name, t in sorted(pipe.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_eight_simultaneous_sessions_get_their_own_results(monkeypatch):
    shared = []
    original_init = TransformerPipeline.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        shared.append(self)

    monkeypatch.setattr(TransformerPipeline, "__init__", recording_init)
    reference = load(DATES, device="cpu")
    shared.clear()
    digest_before = parameters_digest(reference)  # same file, loaded apart from the app's cache
    sources = ["21 November 2026", "3.4.1999", "Nov 5, 1901", "2099/12/31", "Monday, January 1, 1900",
               "9th of July 1969", "FEBRUARY 29, 2000", "august 15, 1947"]
    results, errors = {}, []

    def session(i):
        try:
            at = AppTest.from_file(APP, default_timeout=180)
            at.session_state["source"] = sources[i]
            at.session_state["device"] = "cpu"
            at.run()
            assert not at.exception, at.exception
            spec = json.loads(at.get("plotly_chart")[0].proto.spec)
            results[i] = decode(next(t for t in spec["data"] if t.get("type") == "heatmap")["z"])
        except BaseException as e:  # reported below: a thread's assert does not fail the test by itself
            errors.append((i, repr(e)))

    # One ScriptCache for every session, as in a server (AppTest otherwise compiles the scripts per session,
    # and concurrent compiles hit CPython 3.11's "AST constructor recursion depth mismatch" bug), warmed by a
    # first visitor before the eight arrive together.
    shared_cache = ScriptCache()
    monkeypatch.setattr(app_test, "ScriptCache", lambda: shared_cache)
    # AppTest installs a mock Runtime singleton for each run and removes it when the run ends: with eight runs at
    # once, the first to end removed it under the others ("Runtime hasn't been created"). Keep the last one.
    import streamlit.runtime as st_runtime
    from streamlit.runtime import Runtime

    last = {}

    def instance():
        if Runtime._instance is not None:
            last["runtime"] = Runtime._instance
        if "runtime" not in last:
            raise RuntimeError("Runtime hasn't been created!")
        return last["runtime"]

    monkeypatch.setattr(Runtime, "instance", staticmethod(instance))
    monkeypatch.setattr(st_runtime, "get_instance", instance)
    warm = AppTest.from_file(APP, default_timeout=180)
    warm.session_state["device"] = "cpu"
    warm.run()
    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(shared) == 1, f"the model was loaded {len(shared)} times instead of once and shared"
    for i, src in enumerate(sources):
        want = reference.run(src).trace.numpy()["decoder.1.cross_attn"].weights[0, 3]  # the story's head
        got = np.asarray(results[i], dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"session {i} ({src!r}) got another's map")
    assert parameters_digest(shared[0]) == digest_before


# deployment defaults ------------------------------------------------------------------------------------------------

def test_streamlit_config_defaults():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["fileWatcherType"] == "none"  # nothing watched, .venv included
    assert config["client"]["toolbarMode"] == "viewer"  # no Deploy button


def test_a_checkpoint_directory_named_like_html_is_shown_as_text(tmp_path, monkeypatch):
    name = '<img src=x onerror="alert(1)"><a href=x>b'
    evil = tmp_path / "models" / name
    shutil.copytree(DATES, evil, ignore=shutil.ignore_patterns("snapshots"))
    monkeypatch.setenv("INSPECTOR_MODELS", str(tmp_path / "models"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["view"] = "Compare"
    at.session_state["cmp_mode"] = "same input, another checkpoint"
    at.session_state["cmp_model"] = f"{name} (models directory)"  # picked from the list: its name is on charts
    at.run()
    assert not at.exception
    assert check_charts(at) >= 2  # A and B side by side, their difference, the distances
    check_markdown(at)
    at.session_state["model"] = f"{name} (models directory)"  # and as the main model
    at.run()
    assert not at.exception
    check_charts(at)
    check_markdown(at)


# round 3 (issue 23): sizes against a memory budget, every file read capped, regexes, symlinks, bidi -------------------

def test_the_model_memory_budget_defaults_to_half_the_available_memory(monkeypatch):
    from model.safe import memory as budget

    monkeypatch.delenv("INSPECTOR_MAX_MODEL_MB", raising=False)
    assert budget._available_bytes() > 0  # /proc/meminfo on Linux
    monkeypatch.setattr(budget, "_available_bytes", lambda: 10 * 2**30)
    assert budget.max_model_bytes() == 5 * 2**30
    monkeypatch.setattr(budget, "_available_bytes", lambda: None)
    assert budget.max_model_bytes() == budget.FALLBACK_MB * 2**20
    monkeypatch.setenv("INSPECTOR_MAX_MODEL_MB", "512")
    assert budget.max_model_bytes() == 512 * 2**20
    monkeypatch.setenv("INSPECTOR_MAX_MODEL_MB", "lots")  # not a number: the default
    assert budget.max_model_bytes() == budget.FALLBACK_MB * 2**20


@pytest.mark.parametrize("budget_mb, file, what", [(4096, "config.json", "float32 parameters need 6.0"),
                                                   (8192, "model.safetensors", "stored, then as float32")])
def test_a_sparse_checkpoint_claiming_1_6e9_parameters_is_refused_by_the_memory_budget(copy, monkeypatch, budget_mb,
                                                                                       file, what):
    """Under the parameter cap (2e9) and every size limit; it used to be read in full (over 12 GB)."""
    import math

    import model.own.checkpoint as checkpoint
    from model import ModelConfig

    edit_json(copy / "config.json", d_model=4096, n_heads=32, n_encoder_layers=4, n_decoder_layers=3, d_ff=16384)
    shapes = checkpoint.expected_shapes(ModelConfig.from_dict(json.loads((copy / "config.json").read_text())))
    n_params = sum(math.prod(s) for s in shapes.values())
    assert 1.6e9 < n_params < checkpoint.MAX_PARAMETERS
    sparse_safetensors(copy / "model.safetensors", shapes)
    monkeypatch.setenv("INSPECTOR_MAX_MODEL_MB", str(budget_mb))
    forbid(monkeypatch, checkpoint, "load_file")
    with pytest.raises(CheckpointError, match=rf"{file}: .*{what}.*GiB, over this server's model memory budget of "
                                              rf"{budget_mb / 1024:.2f} GiB"):
        load_checkpoint(copy)


@pytest.mark.parametrize("name", ["config.json", "meta.json"])
def test_every_json_file_is_read_with_a_byte_cap(copy, monkeypatch, name):
    """A 200-MB JSON file is refused from its size, before a byte of it is read."""
    import model.safe.files as files

    with open(copy / name, "r+b") as f:
        f.truncate(200 * 2**20)  # a sparse file: no disk used
    reads = []
    real_read = os.read
    monkeypatch.setattr(files.os, "read", lambda fd, n: (data := real_read(fd, n), reads.append(len(data)))[0])
    with pytest.raises(CheckpointError, match=rf"{name}: 200\.0 MiB is too large for this file \(at most 4 MiB\)"):
        load_checkpoint(copy)
    assert sum(reads) < 5 * 2**20  # the files before it, never this one


HOSTILE_PATTERNS = [r"(q+)+$", r"(a|a)*", r"(a*)*", r"(.*a){12}", r"(a|ab)+$", r"(\s|\n)+$", r"(a?){25}a{25}",
                    r"(?:\d{1,3})+x", r"([a-z]+)*!", r"(\w|\d)+$", r"(?:x+x+)+y"]
STANDARD_PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "llama3/qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    "o200k": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
             r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
             r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
             r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "t5 spaces": r" {2,}", "this project's char tokenizer": r"[\s\S]", "crlf runs": r"(?:\r?\n)+",
    "bloom": r" ?[^(\s|[.,!?…。，、।۔،])]+", "alternatives": r"(?:[a-z]|[0-9])+", "digits": r"\p{N}{1,3}",
}


@pytest.mark.parametrize("pattern", HOSTILE_PATTERNS)
def test_the_regex_check_refuses_patterns_that_backtrack_catastrophically(pattern):
    from model.safe.regex_check import backtracking_risk

    assert backtracking_risk(pattern)


@pytest.mark.parametrize("name", sorted(STANDARD_PATTERNS))
def test_the_regex_check_passes_the_standard_pre_tokenizer_patterns(name):
    from model.safe.regex_check import backtracking_risk

    assert backtracking_risk(STANDARD_PATTERNS[name]) is None


@pytest.mark.parametrize("part", ["normalizer", "pre_tokenizer"])
def test_a_tokenizer_with_a_backtracking_regex_is_refused_at_load(copy, part):
    """Issue 23: a Replace normalizer or a Split pre-tokenizer with (q+)+$ held every session for 8-14 s on 960
    characters. Refused at load, naming the file and the pattern; nested sequences are walked too."""
    spec = json.loads((copy / "source_tokenizer.json").read_text())
    hostile = {"type": "Replace", "pattern": {"Regex": "(q+)+$"}, "content": "q"} if part == "normalizer" else \
        {"type": "Split", "pattern": {"Regex": "(q+)+$"}, "behavior": "Isolated", "invert": False}
    kind = "normalizers" if part == "normalizer" else "pretokenizers"
    inner = spec.get(part)
    spec[part] = {"type": "Sequence", kind: [hostile] + ([inner] if inner else [])}
    (copy / "source_tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=r"source_tokenizer\.json: the " + part + r".*regex '\(q\+\)\+\$' can "
                                              r"take exponential time.*repetition inside a repetition"):
        load_checkpoint(copy)


def test_an_added_token_of_a_million_characters_is_refused(copy):
    spec = json.loads((copy / "target_tokenizer.json").read_text())
    spec["added_tokens"].append({"id": len(spec["model"]["vocab"]), "content": "x" * 1_000_000, "single_word": False,
                                 "lstrip": False, "rstrip": False, "normalized": False, "special": False})
    (copy / "target_tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=r"target_tokenizer\.json: an added token of 1,000,000 characters"):
        load_checkpoint(copy)


@pytest.mark.parametrize("name", ["config.json", "meta.json", "source_tokenizer.json", "model.safetensors"])
def test_a_checkpoint_file_that_links_out_of_the_roots_is_never_opened(tmp_path, name):
    """Issue 23: only the typed folder was checked; a config.json or a weights file linking to /etc was opened."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    ck = root / "ck"
    shutil.copytree(DATES, ck, ignore=shutil.ignore_patterns("snapshots"))
    outside.mkdir()
    shutil.move(ck / name, outside / name)
    (ck / name).symlink_to(outside / name)
    assert load_checkpoint(ck)[4] is not None  # library use (no policy): a symlink is followed
    with pytest.raises(CheckpointError, match=rf"{name}: links outside the allowed checkpoint directories"):
        load_checkpoint(ck, policy=public_policy(root))
    load_checkpoint(ck, policy=public_policy(root, outside))  # a link to another allowed root is fine


def test_the_app_refuses_a_checkpoint_whose_files_link_out_of_the_roots(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    ck = root / "ck"
    shutil.copytree(DATES, ck, ignore=shutil.ignore_patterns("snapshots"))
    outside.mkdir()
    (outside / "config.json").write_text((ck / "config.json").read_text())
    (ck / "config.json").unlink()
    (ck / "config.json").symlink_to(outside / "config.json")
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    monkeypatch.setenv("INSPECTOR_ALLOWED_ROOTS", f"{root}{os.pathsep}{ROOT / 'checkpoints'}")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["model_path"] = str(ck)
    at.run()
    assert not at.exception
    assert "links outside the allowed checkpoint directories" in at.error[0].value.replace("\\", "")
    assert at.get("plotly_chart")  # the previous model stays


def test_snapshots_and_models_that_link_out_of_the_roots_are_not_offered(tmp_path, monkeypatch):
    """Issue 23: a snapshots/step_* folder linking outside was offered under "Training step" and loaded."""
    from ui.models import model_choices, snapshots

    root, outside = tmp_path / "root", tmp_path / "outside"
    ck = root / "ck"
    shutil.copytree(DATES, ck, ignore=shutil.ignore_patterns("step_00100", "step_00250", "step_00500"))
    shutil.copytree(DATES / "snapshots" / "step_00100", outside / "step_00100")
    shutil.copytree(DATES, outside / "model", ignore=shutil.ignore_patterns("snapshots"))
    (ck / "snapshots" / "step_00100").symlink_to(outside / "step_00100")
    (root / "linked_model").symlink_to(outside / "model")
    monkeypatch.setenv("INSPECTOR_MODELS", str(root))
    assert [s for s, _ in snapshots(str(ck))] == [0, 100, 750]  # local use: links are followed
    assert "linked_model (models directory)" in [c.label for c in model_choices()]
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    monkeypatch.setenv("INSPECTOR_ALLOWED_ROOTS", f"{root}{os.pathsep}{ROOT / 'checkpoints'}")
    assert [s for s, _ in snapshots(str(ck))] == [0, 750]
    labels = [c.label for c in model_choices()]
    assert "ck (models directory)" in labels and "linked_model (models directory)" not in labels


def bidi_isolated(text: str) -> bool:
    """True when every bidi override or embedding in ``text`` sits inside a FIRST STRONG ISOLATE ... POP
    DIRECTIONAL ISOLATE pair, so that it cannot reorder the text around it."""
    depth = 0
    for ch in text:
        if ch in "\u2066\u2067\u2068":
            depth += 1
        elif ch == "\u2069":
            if depth == 0:
                return False
            depth -= 1
        elif ch in "\u202a\u202b\u202d\u202e" and depth == 0:
            return False
    return depth == 0


def test_md_isolates_model_and_user_text():
    from ui.text import md

    assert md("") == ""
    assert md("\u202eevil") == "\u2068\u202eevil\u2069"
    assert md("a\u2069\u202eb") == "\u2068a\u202eb\u2069"  # a stray PDI cannot close the isolate early
    assert bidi_isolated("x " + md("\u2067\u202e" * 3) + " y")


def test_a_right_to_left_override_cannot_reverse_the_page(tmp_path, monkeypatch):
    """Issue 23: a U+202E typed into a box reversed the sidebar's text after it."""
    name = "\u202eevil\u202c model"
    shutil.copytree(DATES, tmp_path / "models" / name, ignore=shutil.ignore_patterns("snapshots"))
    monkeypatch.setenv("INSPECTOR_MODELS", str(tmp_path / "models"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["target_mode"] = "type a target (teacher forcing)"
    at.session_state["target"] = "\u202e2026-11-21"
    at.session_state["model"] = f"{name} (models directory)"
    at.run()
    assert not at.exception
    at.session_state["model_path"] = "/no/such/\u202edir"
    at.run()
    assert not at.exception
    shown = [el.value for el in list(at.markdown) + list(at.error) + list(at.caption) + list(at.sidebar.caption)]
    assert any("\u202e" in s for s in shown) and any("2026" in s and "\u202e" in s for s in shown)
    for value in shown:
        assert bidi_isolated(value), repr(value[:200])


def test_every_download_button_leaves_the_page_as_it_is():
    """A download button that reruns the script on its click drops the session's reference to its own file while the
    browser fetches it; under load the other sessions' sweeps then delete the file and the download is "canceled"
    (benchmarks/bench_load.py: 7 of 413). Every one passes on_click="ignore"."""
    import ast

    root = Path(__file__).resolve().parent.parent
    calls, pairs = [], 0  # pairs: calls of ui.views.common.table_downloads (its two buttons are among the calls)
    for path in [*root.glob("ui/**/*.py"), *root.glob("app_pages/*.py"), root / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "download_button":
                on_click = {k.arg: k.value for k in node.keywords}.get("on_click")
                calls.append((f"{path.relative_to(root)}:{node.lineno}",
                              isinstance(on_click, ast.Constant) and on_click.value == "ignore"))
            pairs += isinstance(node, ast.Call) and getattr(node.func, "id", None) == "table_downloads"
    assert len(calls) - 2 + 2 * pairs >= 20, calls  # every download button of the app is found
    assert all(ok for _, ok in calls), [where for where, ok in calls if not ok]
