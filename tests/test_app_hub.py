"""Hub ids in the app: the sidebar lists the Hugging Face cache (and why a model of it cannot be opened), the box opens
an id or a snapshot's path and names the model by its id everywhere (picker, caption, story, links, saved sessions,
exports, the atlas), anything typed ends in a message that keeps the previous model, and a download happens only
when allowed, with a progress bar, never on a public server. The cache is laid out by the tests; the hub is this
process's, on 127.0.0.1 (tests/fake_hub.py).
"""

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import clear_app_caches
from streamlit.testing.v1 import AppTest

from tests.hf_models import build
from tests.hub_cache import MINILM, MINILM_COMMIT, add_model_dir, add_repo, files_of, minilm_dir

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SHIPPED = ROOT / "checkpoints"
TINY = "org/tiny-gpt2"
V1 = "1" * 40


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"gpt2": build("gpt2", root / "gpt2"), "bert": build("bert", root / "bert"),
            "gpt2-v1": build("gpt2", root / "gpt2-v1", seed=1)}


@pytest.fixture
def cache(hub_cache, tiny, monkeypatch):
    """The shipped checkpoints, and a cache: two tiny models (one at a tag too), and one this app cannot open."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    for name in ("INSPECTOR_MODELS", "INSPECTOR_PUBLIC", "INSPECTOR_ALLOWED_ROOTS", "INSPECTOR_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    add_model_dir(hub_cache, TINY, tiny["gpt2"])
    add_model_dir(hub_cache, TINY, tiny["gpt2-v1"], commit=V1, refs=("v1",))
    add_model_dir(hub_cache, "org/tiny-bert", tiny["bert"])
    add_repo(hub_cache, "org/binonly", {"config.json": b'{"model_type": "bert"}', "pytorch_model.bin": b"\x80",
                                        "tokenizer.json": b"{}"})
    clear_app_caches()
    yield hub_cache
    clear_app_caches()


def run(query: dict | None = None, state: dict | None = None, at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(APP, default_timeout=180)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    for k, v in (state or {}).items():
        at.session_state[k] = v
    return at.run()


def plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text).replace("\u2068", "").replace("\u2069", "")


def clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def caption(at) -> str:
    """The sidebar's caption of the open model ("name: family, arch, ... running on cpu")."""
    return next((plain(c.value) for c in at.sidebar.caption if "running on" in c.value), "")


def captions(at) -> str:
    return plain(" ".join(c.value for c in at.sidebar.caption))


def errors(at) -> str:
    return plain(" ".join(e.value for e in [*at.error, *at.sidebar.error]))


def story(at) -> str:
    return plain(" ".join(m.value for m in at.markdown))


def snapshot(cache: Path, repo: str, commit: str | None = None) -> Path:
    folder = cache / ("models--" + repo.replace("/", "--"))
    return folder / "snapshots" / (commit or (folder / "refs" / "main").read_text())


def test_the_picker_lists_the_cache_and_says_why_a_model_cannot_open(cache):
    at = run()
    clean(at)
    options = at.sidebar.selectbox(key="model").options
    assert options[:4] == ["dates", "induction", "numbers", "reverse"]
    assert "org/tiny-gpt2 · gpt2 · " in " ".join(options) and "org/tiny-gpt2@v1 · gpt2 · " in " ".join(options)
    assert "org/binonly · cannot open" in options
    assert any("Hugging Face cache · 4 models (1 cannot open)" == e.label for e in at.sidebar.expander)
    listed = [line for m in at.sidebar.markdown for line in plain(m.value).splitlines() if line.startswith("- ")]
    assert [line.split(" · ")[0] for line in listed] == [f"- **{n}**" for n in ("org/binonly", "org/tiny-bert",
                                                                                TINY, f"{TINY}@v1")]
    assert "cannot open: no safetensors weights (only pytorch_model.bin" in listed[0]
    assert listed[1].startswith("- **org/tiny-bert** · bert · ") and listed[1].endswith(" kB")
    # picked, it says why and keeps the model that was open
    at.sidebar.selectbox(key="model").set_value("org/binonly · cannot open").run()
    clean(at)
    assert "cannot be opened" in errors(at) and "pytorch_model.bin" in errors(at)
    assert caption(at).startswith("dates:")


def test_a_cached_model_picked_opens_named_by_its_id(cache):
    at = run()
    label = next(o for o in at.sidebar.selectbox(key="model").options if o.startswith("org/tiny-bert · "))
    at.sidebar.selectbox(key="model").set_value(label).run()
    clean(at)
    assert caption(at).startswith("org/tiny-bert: bert, encoder-only")
    assert at.query_params["model"] == "org/tiny-bert"


@pytest.mark.parametrize("typed, name", [(TINY, TINY), (f"{TINY}@v1", f"{TINY}@v1"),
                                         (f"{TINY}@{V1[:12]}", f"{TINY}@v1"), (f"{TINY}@{V1}", f"{TINY}@v1")])
def test_an_id_typed_in_the_box_opens_and_names_the_model(cache, typed, name):
    """Named as the cache names that snapshot: the branch or tag that points to it (a commit typed shows its tag)."""
    at = run(state={"model_path": typed, "source": "the cat sat on the mat"})
    clean(at)
    box = at.sidebar.selectbox(key="model")
    assert box.format_func(box.value) == f"{name} (typed)"
    assert caption(at).startswith(f"{name}: gpt2, decoder-only")
    assert f"**{name}**" in story(at) or name in story(at)
    assert at.query_params["model"] == name


def test_a_snapshot_typed_by_path_is_named_by_its_id_not_its_commit(hub_cache, monkeypatch):
    """The issue's case: the real all-MiniLM-L6-v2, its snapshot's absolute path typed in the box."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    path = add_model_dir(hub_cache, MINILM, minilm_dir(), commit=MINILM_COMMIT)
    clear_app_caches()
    at = run(state={"model_path": str(path), "source": "The cat sat on the mat."})
    clean(at)
    box = at.sidebar.selectbox(key="model")
    assert box.format_func(box.value) == f"{MINILM} (typed)"
    assert caption(at).startswith(f"{MINILM}: bert, encoder-only, 6 layers, 12 heads, d_model 384")
    text = caption(at) + story(at) + " ".join(box.options) + json.dumps(dict(at.query_params))
    assert MINILM_COMMIT not in text and MINILM_COMMIT[:12] not in text
    assert at.query_params["model"] == MINILM
    from ui.models import model_name, model_stem
    assert model_name(str(path)) == MINILM and model_stem(str(path)) == "sentence-transformers--all-MiniLM-L6-v2"


def test_links_and_saved_sessions_name_the_id_and_reopen_it(cache):
    at = run(query={"model": f"{TINY}@v1", "text": "a dog ran", "layer": "1", "head": "2"})
    clean(at)
    assert caption(at).startswith(f"{TINY}@v1: gpt2")
    assert at.session_state["source"] == "a dog ran"
    assert at.session_state["layer"] == 1 and at.session_state["head"] == 2
    from ui.links import session_bytes

    sel = SimpleNamespace(kind="decoder masked self", layer=1, head=3, stage="weights", view="Attention map")
    data = session_bytes(str(snapshot(cache, TINY, V1)), {"source": "red fox", "target": None, "target_mode": None,
                                                          "max_new": 0, "gen_new": 0}, sel)
    assert json.loads(data)["model"] == f"{TINY}@v1"
    at = run()
    at.sidebar.file_uploader(key="session_file").upload("s.json", data, "application/json")
    at.run()
    clean(at)
    assert caption(at).startswith(f"{TINY}@v1: gpt2") and at.session_state["head"] == 3


def warnings(at) -> str:
    return plain(" ".join(w.value for w in at.warning))


def test_a_link_to_a_model_the_cache_lacks_says_how_to_get_it(cache):
    at = run(query={"model": "org/elsewhere"})
    clean(at)
    assert "INSPECTOR_ALLOW_DOWNLOAD=1" in warnings(at) and "--allow-download" in warnings(at)
    assert caption(at).startswith("dates:")


@pytest.mark.parametrize("typed, words", [
    ("org/tiny-gtp2", "did you mean org/tiny-gpt2"),
    ("org/name@../../x", "not a branch, tag or commit"),
    ("https://huggingface.co/gpt2", "web address"),
    ("😀" * 30, "nor a hub id"),
    ("a\x00b", "control characters"),
    ("x" * 1024, "no such checkpoint directory"),
    ("org/binonly", "pytorch_model.bin"),
    ("../../../etc", "config.json: file is missing"),
])
def test_anything_typed_ends_in_a_message_and_keeps_the_model(cache, typed, words):
    at = run(state={"model_path": TINY, "source": "the cat sat"})
    assert caption(at).startswith(f"{TINY}: gpt2")
    at.sidebar.text_input(key="model_path").set_value(typed).run()
    clean(at)
    assert words in errors(at), errors(at)
    assert f"Still showing {TINY}" in errors(at) or caption(at).startswith(f"{TINY}: gpt2")


def test_a_public_server_lists_and_opens_the_cache_and_never_downloads(cache, fake_hub, tiny, monkeypatch):
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    monkeypatch.setenv("INSPECTOR_HUB_CACHE", "1")  # a public server opens its cache only when told to
    monkeypatch.setenv("INSPECTOR_ALLOW_DOWNLOAD", "1")
    fake_hub.add("org/on-the-hub", files_of(tiny["gpt2"]))
    at = run(query={"model": TINY})
    clean(at)
    assert caption(at).startswith(f"{TINY}: gpt2")
    at = run(query={"model": "org/on-the-hub"})
    assert "lists no model called" in warnings(at)
    at.sidebar.text_input(key="model_path").set_value("org/on-the-hub").run()
    clean(at)
    assert "public server" in errors(at) and not at.sidebar.button
    assert str(cache) not in errors(at) + captions(at)  # where the server keeps its files is not said
    assert [r for r in fake_hub.requests if "/api/models" in r[1] or "/resolve/" in r[1]] == []


def test_a_download_when_allowed_shows_its_size_progress_and_opens(cache, fake_hub, tiny, monkeypatch):
    monkeypatch.setenv("INSPECTOR_ALLOW_DOWNLOAD", "1")
    fake_hub.add("org/on-the-hub", {**files_of(tiny["bert"]), "pytorch_model.bin": b"\x80" * 64})
    fake_hub.throttle = 100_000  # bytes a second: a few seconds for the tiny model
    at = run(state={"source": "the cat sat on the mat"})
    at.sidebar.text_input(key="model_path").set_value("org/on-the-hub").run()
    clean(at)
    assert "It can be downloaded" in plain(" ".join(i.value for i in at.sidebar.info))
    assert "config, tokenizer and safetensors files only" in captions(at)
    assert caption(at).startswith("dates:")  # the page still shows the model that was open
    assert not fake_hub.file_bodies()  # nothing fetched before the click
    start = at.sidebar.button(key="download_start")
    assert start.label.startswith("Download org/on-the-hub (")
    start.click().run()
    clean(at)
    texts = [plain(p.proto.text) for p in at.sidebar.get("progress")]
    assert texts and "Downloading org/on-the-hub" in texts[0] and " of " in texts[0]
    assert at.sidebar.button(key="download_stop").label == "Stop"
    from model import hub

    job = hub.current_job(hub.HubRef("org/on-the-hub"))
    assert job.wait(60) and job.state().status == "done", job.state()
    at.run()
    clean(at)
    assert caption(at).startswith("org/on-the-hub: bert, encoder-only")
    assert not any(p.endswith("pytorch_model.bin") for p in fake_hub.file_bodies())


def test_the_command_line_with_allow_download_fetches_and_opens(cache, fake_hub, tiny, monkeypatch):
    """`streamlit run app.py -- org/on-the-hub --allow-download --text ...`: the download starts by itself (the
    command asked for it), and the model opens on that text when it ends."""
    fake_hub.add("org/on-the-hub", files_of(tiny["gpt2"]))
    monkeypatch.setattr(sys, "argv", [APP, "org/on-the-hub", "--allow-download", "--text", "the cat sat"])
    at = run()
    clean(at)
    from model import hub

    job = hub.current_job(hub.HubRef("org/on-the-hub"))
    assert job is not None and job.wait(60) and job.state().status == "done", job and job.state()
    at.run()
    clean(at)
    assert caption(at).startswith("org/on-the-hub: gpt2, decoder-only")
    assert at.session_state["source"] == "the cat sat"


def test_without_the_setting_the_box_says_how_to_allow_downloads(cache, fake_hub):
    at = run()
    at.sidebar.text_input(key="model_path").set_value("org/on-the-hub").run()
    clean(at)
    assert "INSPECTOR_ALLOW_DOWNLOAD=1" in errors(at) and not fake_hub.requests


def test_the_command_line_opens_a_model_and_a_text(cache, monkeypatch):
    """`streamlit run app.py -- org/tiny-gpt2@v1 --text "..."`: sys.argv is the script's, after `--`."""
    monkeypatch.setattr(sys, "argv", [APP, f"{TINY}@v1", "--text", "hello from the command line"])
    at = run()
    clean(at)
    assert caption(at).startswith(f"{TINY}@v1: gpt2")
    assert at.session_state["source"] == "hello from the command line"
    at = run(query={"model": "reverse"})  # a link's own model wins
    assert caption(at).startswith("reverse:")


def test_the_atlas_names_runs_by_their_hub_id(cache, tmp_path):
    from model.atlas.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat\na dog ran\n")
    db = tmp_path / "atlas.duckdb"
    assert main(["--model", TINY, "--data", str(corpus), "--db", str(db), "--quiet", "--qk-examples", "0"]) == 0
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select model_path from runs").fetchall() == [(TINY,)]
    from ui.atlas.page import model_label

    assert model_label(TINY) == TINY and model_label(str(snapshot(cache, TINY, V1))) == f"{TINY}@v1"
    assert main(["--model", "org/elsewhere", "--data", str(corpus), "--db", str(db), "--quiet"]) == 1
