"""Start-up settings shared by the app and the benchmarks."""

import platform

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
