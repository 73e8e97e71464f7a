"""Start-up settings and the thread model: every call runs on a worker lane whose torch thread count was set once."""

import dataclasses
import platform
import threading
import time

import pytest
import torch

import model.runtime as runtime
from model import load
from model.runtime import configure_cpu, lane_for, lanes, on_worker

DATES = "checkpoints/dates"


def test_configure_cpu_sets_threads_and_allocator(monkeypatch):
    before = torch.get_num_threads()
    try:
        settings = configure_cpu(2)
        assert settings["torch_threads"] == 2 == torch.get_num_threads()
        assert configure_cpu(0)["torch_threads"] == 1  # never below one thread
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            assert settings["malloc_tuned"] is True
        assert "worker" in settings["small_lane"] and "worker" in settings["big_lane"]
    finally:
        torch.set_num_threads(before)


def test_each_lane_runs_with_the_count_its_workers_were_given():
    all_lanes = lanes()
    for lane in all_lanes.values():
        seen = [lane.run(lambda: (torch.get_num_threads(), on_worker())) for _ in range(6)]
        assert all(n == lane.threads and w is lane for n, w in seen), (lane.name, seen)
    assert all_lanes["small"].threads == runtime.small_threads()
    assert on_worker() is None  # the test's own thread is no worker


def test_a_lane_hands_back_results_and_exceptions_and_runs_nested_calls_inline():
    lane = lanes()["small"]
    assert lane.run(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        lane.run(lambda: 1 / 0)
    outer = lanes()["big"]
    # a worker asking another lane runs the work itself (no worker ever waits for another)
    assert outer.run(lambda: lane.run(lambda: on_worker())) is outer


def test_big_calls_go_to_the_big_lane(monkeypatch):
    assert lane_for(runtime.BIG_CALL_FLOPS / 10).name == "small"
    big = lane_for(runtime.BIG_CALL_FLOPS)
    assert big.name == ("big" if lanes()["big"].threads > 1 else "small")
    assert lane_for(runtime.BIG_CALL_FLOPS, "cuda").name == "small"  # not a CPU call: the thread count is moot


def test_concurrent_sessions_each_run_with_the_count_they_were_meant_to(monkeypatch):
    """Eight sessions at once, small and big calls mixed: every forward runs on a worker with its lane's count,
    the calling threads' counts never change, and every answer is the one the call alone gives."""
    pipe = load(DATES, "cpu")
    seen, errors = [], []
    real_forward = type(pipe).forward

    def spy(self, *args, **kwargs):
        seen.append((on_worker().name, torch.get_num_threads(), on_worker().threads))
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "forward", spy)
    def lane_by_session(f, device="cpu"):  # sessions 0-3 small, 4-7 big
        return runtime.LANES["big" if threading.current_thread().name.endswith("big") else "small"]

    monkeypatch.setattr("model.call.lane_for", lane_by_session)

    alone = {}
    for which in ("small", "big"):  # each lane's answer alone (another thread count may change the last bits)
        t = threading.Thread(target=lambda w=which: alone.__setitem__(w, pipe.run("Saturday, November 21, 2026")),
                             name=f"alone-{which}")
        t.start()
        t.join()
    seen.clear()

    def session(i):
        try:
            before = torch.get_num_threads()
            ref = alone["big" if i >= 4 else "small"]
            for _ in range(3):
                res = pipe.run("Saturday, November 21, 2026")
                assert res.output_text == ref.output_text
                for name in ref.trace:
                    assert torch.equal(res.trace[name].weights, ref.trace[name].weights)
            assert torch.get_num_threads() == before
        except BaseException as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=session, args=(i,), name=f"s{i}-{'big' if i >= 4 else 'small'}")
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) == 8 * 3  # one traced forward per run (decoding runs greedy_batch on the same lane)
    assert all(count == meant for _, count, meant in seen)
    assert {lane for lane, _, _ in seen} == {"small", "big"}


def test_a_lazy_record_computed_later_is_bitwise_the_full_capture_on_the_big_lane(tmp_path, monkeypatch):
    """A call big enough for the big lane (here: every call, by lowering the threshold): its lazy records are
    recomputed on that lane, with its thread count, and equal the full capture bitwise."""
    from tests.hf_models import build

    pipe = load(build("gpt2", tmp_path / "gpt2"), "cpu")
    monkeypatch.setattr(runtime, "BIG_CALL_FLOPS", 1.0)
    text = "the cat sat on the mat " * 4
    full = pipe.run(text)
    lazy = pipe.run(text, mode="lazy")
    counts = []
    real = lazy.trace._lane.run
    monkeypatch.setattr(lazy.trace._lane, "run", lambda fn: real(lambda: (counts.append(torch.get_num_threads()),
                                                                           fn())[1]))
    time.sleep(0.01)
    for name in full.trace:
        a, b = full.trace[name], lazy.trace[name]
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if f.name == "row_max":
                continue
            assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), (name, f.name)
    assert lazy.trace._lane is lanes()["big"] and counts and set(counts) == {lanes()["big"].threads}
