"""Downloads, against a small HTTP server on 127.0.0.1 that answers as the Hub does (tests/fake_hub.py), through
``python -m model.hub get`` in a subprocess whose HF_ENDPOINT points at it (huggingface_hub reads it when first
imported) with Xet off: allowed -> fetched with a progress bar and opened; not allowed, or on a public server ->
refused without a request; over the memory budget, ``.bin``-only or needing remote code -> refused before the weights
are fetched (the server's requests are counted); the server dying mid-file, or Ctrl-C -> a message, nothing
half-written, and a cache that opens on the next try.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model import load
from model.hub import HubRef, NotCached, find_snapshot, locate
from model.hub.cache import forget_listings
from tests.fake_hub import FakeHub
from tests.hf_models import build
from tests.hub_cache import MINILM, files_of, minilm_dir

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
REPO = "org/tiny-gpt2"
TEXT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build("gpt2", tmp_path_factory.mktemp("tiny") / "gpt2")


@pytest.fixture
def hub(tiny):
    server = FakeHub()
    server.add(REPO, {**files_of(tiny), "README.md": b"# tiny", "pytorch_model.bin": b"\x80pickle",
                      "onnx/model.onnx": b"onnx", "modeling_x.py": b"import os"})
    server.add("org/binonly", {"config.json": b'{"model_type": "gpt2"}', "pytorch_model.bin": b"\x80" * 4096,
                               "tokenizer.json": b"{}"})
    server.add("org/custom", {"config.json": b'{"model_type": "my_arch", "auto_map": {"AutoModel": "m.M"}}',
                              "model.safetensors": b"\0" * 4096, "tokenizer.json": b"{}"})
    server.start()
    yield server
    server.stop()


def get(hub: FakeHub, cache: Path, *args: str, env: dict | None = None, wait: bool = True):
    """``python -m model.hub get ARGS`` with this hub and cache (a Popen when not ``wait``)."""
    full = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_XET": "1",
            **(env or {})}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "INSPECTOR_PUBLIC", "INSPECTOR_ALLOW_DOWNLOAD"):
        if name not in (env or {}):
            full.pop(name, None)
    cmd = [sys.executable, "-m", "model.hub", "get", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=300)


def model_requests(hub: FakeHub) -> list[tuple[str, str]]:
    """The requests about models (huggingface_hub also asks for its agent registry once a day: not ours)."""
    return [r for r in hub.requests if "agent-harnesses" not in r[1]]


def leftovers(cache: Path) -> list[Path]:
    """Partial files a download could leave behind."""
    return [p for p in cache.rglob("*") if p.name.endswith(".incomplete") or ".incomplete" in p.name]


def same_attention(a, b) -> None:
    ra, rb = a.run(TEXT), b.run(TEXT)
    assert ra.trace.keys() == rb.trace.keys()
    for name in ra.trace:
        assert torch.equal(ra.trace[name].weights, rb.trace[name].weights)


def test_an_allowed_download_fetches_only_what_opens_and_opens(hub, hub_cache, tiny):
    done = get(hub, hub_cache, REPO, "--allow-download")
    assert done.returncode == 0, done.stderr
    assert "downloading org/tiny-gpt2" in done.stderr and "/s" in done.stderr  # the bar: bytes and speed
    assert f"downloaded {REPO}" in done.stderr
    snapshot = Path(done.stdout.strip())
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(n for n in files_of(tiny))
    fetched = sorted(p.rsplit("/", 1)[-1] for m, p in model_requests(hub) if m == "GET" and "/resolve/" in p)
    assert fetched == sorted(files_of(tiny))  # never the .bin, the README, onnx/ or code
    assert (hub_cache / "models--org--tiny-gpt2" / "refs" / "main").read_text() == snapshot.name
    forget_listings()
    same_attention(load(REPO, "cpu"), load(str(tiny), "cpu"))  # offline now, by id: the model it was
    asked = len(model_requests(hub))
    again = get(hub, hub_cache, REPO, "--allow-download")
    assert again.returncode == 0 and again.stdout.strip() == str(snapshot)
    assert len(model_requests(hub)) == asked  # cached now: not even a request


def test_a_download_by_tag_records_the_tag(hub, hub_cache):
    hub.repos[REPO].refs["v1"] = hub.repos[REPO].commit
    done = get(hub, hub_cache, f"{REPO}@v1", "--allow-download", "--quiet")
    assert done.returncode == 0, done.stderr
    assert (hub_cache / "models--org--tiny-gpt2" / "refs" / "v1").is_file()
    assert locate(f"{REPO}@v1").name == f"{REPO}@v1"


def test_without_the_setting_nothing_is_asked_of_the_hub(hub, hub_cache):
    done = get(hub, hub_cache, REPO)
    assert done.returncode == 1
    assert "INSPECTOR_ALLOW_DOWNLOAD=1" in done.stderr and "--allow-download" in done.stderr
    assert model_requests(hub) == []
    with pytest.raises(NotCached, match="INSPECTOR_ALLOW_DOWNLOAD=1"):
        locate(REPO)


def test_a_public_server_never_downloads(hub, hub_cache):
    done = get(hub, hub_cache, REPO, "--allow-download", env={"INSPECTOR_PUBLIC": "1",
                                                               "INSPECTOR_ALLOW_DOWNLOAD": "1"})
    assert done.returncode == 1 and "public" in done.stderr
    assert model_requests(hub) == []


def test_a_model_over_the_memory_budget_is_refused_before_any_file(hub, hub_cache):
    done = get(hub, hub_cache, REPO, "--allow-download", env={"INSPECTOR_MAX_MODEL_MB": "0.01"})
    assert done.returncode == 1 and "INSPECTOR_MAX_MODEL_MB" in done.stderr and "nothing was downloaded" in done.stderr
    assert [p for _, p in model_requests(hub)] == [f"/api/models/{REPO}/revision/main"]  # the listing only
    assert not (hub_cache / "models--org--tiny-gpt2").exists()


def test_a_bin_only_repository_is_refused_before_download(hub, hub_cache):
    done = get(hub, hub_cache, "org/binonly", "--allow-download")
    assert done.returncode == 1 and "pytorch_model.bin" in done.stderr and "pickled" in done.stderr
    assert [p for _, p in model_requests(hub)] == ["/api/models/org/binonly/revision/main"]


def test_remote_code_is_refused_before_the_weights(hub, hub_cache):
    done = get(hub, hub_cache, "org/custom", "--allow-download")
    assert done.returncode == 1 and "remote code" in done.stderr
    bodies = [p for p in hub.file_bodies()]
    assert bodies and not any(p.endswith("model.safetensors") for p in bodies)


def test_an_unknown_model_or_revision(hub, hub_cache):
    done = get(hub, hub_cache, "org/nothere", "--allow-download")
    assert done.returncode == 1 and "has no model “org/nothere”" in done.stderr
    done = get(hub, hub_cache, f"{REPO}@v7", "--allow-download")
    assert done.returncode == 1 and "no revision “v7”" in done.stderr


def test_the_server_dying_mid_file_leaves_a_cache_that_opens_next_time(hub, hub_cache, tiny):
    """The weights' body is cut after 1 kB and the server goes away: huggingface_hub retries, gives up, and
    removes its partial file; the cache says the snapshot is incomplete (never opened half-written); the next
    try against a hub that answers fetches what is missing, and the model opens."""
    hub.die_after["model.safetensors"] = 1024
    done = get(hub, hub_cache, REPO, "--allow-download")
    assert done.returncode == 1 and "did not finish" in done.stderr and "nothing half-written" in done.stderr
    assert leftovers(hub_cache) == []
    with pytest.raises(NotCached, match="not in the Hugging Face cache"):  # main is recorded only when complete
        find_snapshot(HubRef(REPO), hub_cache)
    with pytest.raises(NotCached, match="interrupted") as e:  # its commit, by huggingface_hub's own file listing
        find_snapshot(HubRef(REPO, hub.repos[REPO].commit), hub_cache)
    assert "model.safetensors" in str(e.value)
    with pytest.raises(NotCached):
        load(REPO, "cpu")
    healthy = FakeHub()
    healthy.repos = hub.repos
    healthy.start()
    try:
        again = get(healthy, hub_cache, REPO, "--allow-download")
    finally:
        healthy.stop()
    assert again.returncode == 0, again.stderr
    fetched = [p.rsplit("/", 1)[-1] for p in healthy.file_bodies()]
    assert fetched == ["model.safetensors"]  # the finished files stayed in the cache
    forget_listings()
    same_attention(load(REPO, "cpu"), load(str(tiny), "cpu"))


def test_ctrl_c_stops_a_download_cleanly(hub_cache):
    """Ctrl-C during the real MiniLM's 87 MB (the hub throttled): exit 130 and a message, no partial file, nothing
    that opens as the model; the same command then finishes it."""
    hub = FakeHub()
    hub.add(MINILM, files_of(minilm_dir()))
    hub.throttle = 20e6
    hub.start()
    try:
        proc = get(hub, hub_cache, MINILM, "--allow-download", wait=False)
        deadline = time.monotonic() + 60
        while not any(p.endswith("model.safetensors") for p in hub.file_bodies()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "nothing half-written" in err
        assert leftovers(hub_cache) == []
        with pytest.raises(NotCached):
            find_snapshot(HubRef(MINILM), hub_cache)
        hub.throttle = None
        again = get(hub, hub_cache, MINILM, "--allow-download", "--quiet")
        assert again.returncode == 0, again.stderr
    finally:
        hub.stop()
    forget_listings()
    assert load(MINILM, "cpu").info.n_heads == 12


def test_stop_ends_a_running_download_and_keeps_nothing_half_written(fake_hub, hub_cache, monkeypatch):
    """The app's way (a job in a thread, its Stop button): in this process, against this process's hub."""
    from model.hub import plan_download, start_job

    monkeypatch.setenv("INSPECTOR_ALLOW_DOWNLOAD", "1")
    fake_hub.add(MINILM, files_of(minilm_dir()))
    fake_hub.throttle = 20e6
    plan = plan_download(HubRef(MINILM))
    assert plan.total_bytes > 90e6 and [n for n, _ in plan.weights] == ["model.safetensors"]
    job = start_job(plan)
    deadline = time.monotonic() + 60
    while job.state().done < 10e6 and time.monotonic() < deadline:
        time.sleep(0.1)
    state = job.state()
    assert state.running and " of 91.3 MB" in state.line() and "MB/s" in state.line(), state
    job.stop()
    assert job.wait(30)
    state = job.state()
    assert state.status == "stopped" and "nothing half-written" in state.message
    assert leftovers(hub_cache) == []
    with pytest.raises(NotCached):
        find_snapshot(HubRef(MINILM), hub_cache)
