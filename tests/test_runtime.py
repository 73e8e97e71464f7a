"""Start-up settings shared by the app and the benchmarks."""

import platform

import pytest
import torch

from model.runtime import configure_cpu


def test_configure_cpu_sets_threads_and_allocator(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ATTN_TORCH_THREADS", "2")
        settings = configure_cpu()
        assert settings["torch_threads"] == 2 == torch.get_num_threads()
        assert configure_cpu(0)["torch_threads"] == 1  # never below one thread
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            assert settings["malloc_tuned"] is True
    finally:
        torch.set_num_threads(before)


def test_big_calls_get_more_threads_and_give_them_back(monkeypatch):
    from model.runtime import BIG_CALL_FLOPS, threads_for

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv("ATTN_TORCH_THREADS_BIG", "3")
        with threads_for(BIG_CALL_FLOPS / 10):  # a small call keeps the one thread
            assert torch.get_num_threads() == 1
        with threads_for(BIG_CALL_FLOPS):
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 1
        with threads_for(BIG_CALL_FLOPS, "cuda"):  # not a CPU call: nothing to change
            assert torch.get_num_threads() == 1
        try:
            with threads_for(BIG_CALL_FLOPS):
                raise RuntimeError("the call failed")
        except RuntimeError:
            pass
        assert torch.get_num_threads() == 1  # restored after a failure too
        for off in ("1", "not a number"):
            monkeypatch.setenv("ATTN_TORCH_THREADS_BIG", off)
            with threads_for(BIG_CALL_FLOPS):
                assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_big_traced_call_runs_with_more_threads_and_the_same_numbers(tmp_path, monkeypatch):
    """The HF pipeline's forward asks for threads by its size; the records do not depend on the thread count."""
    pytest.importorskip("transformers")
    import model.runtime as runtime
    from model import load
    from tests.hf_models import build

    pipe = load(build("gpt2", tmp_path / "gpt2"), "cpu")
    seen = []
    real = runtime.threads_for

    def spy(flops, device="cpu"):
        seen.append(flops)
        return real(flops, device)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pipe.run("a few words to trace")
        monkeypatch.setattr("model.hf.pipeline.threads_for", spy)
        monkeypatch.setattr(runtime, "BIG_CALL_FLOPS", 1.0)  # every call is big now
        monkeypatch.setenv("ATTN_TORCH_THREADS_BIG", "2")
        two = pipe.run("a few words to trace")
    finally:
        torch.set_num_threads(before)
    T = len(one.target.ids)
    assert seen == [2 * pipe.info.parameters * T]
    torch.testing.assert_close(two.logits, one.logits)
    for name in one.trace:
        torch.testing.assert_close(two.trace[name].weights, one.trace[name].weights)


def test_big_calls_take_turns_so_none_sees_the_count_change(monkeypatch):
    import threading
    import time

    from model.runtime import BIG_CALL_FLOPS, threads_for

    monkeypatch.setenv("ATTN_TORCH_THREADS_BIG", "2")
    before = torch.get_num_threads()
    seen, inside = [], []
    try:
        torch.set_num_threads(1)

        def big_call():
            with threads_for(BIG_CALL_FLOPS):
                inside.append(1)
                assert len(inside) == 1  # alone
                first = torch.get_num_threads()
                time.sleep(0.05)
                seen.append((first, torch.get_num_threads()))
                inside.pop()

        threads = [threading.Thread(target=big_call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [(2, 2)] * 4
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
