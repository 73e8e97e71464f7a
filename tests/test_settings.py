"""Settings: read in model/settings.py only, documented from it, and torch-free."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model import settings

ROOT = Path(__file__).resolve().parent.parent
CODE = [p for d in ("model", "ui", "viz", "app_pages") for p in (ROOT / d).rglob("*.py")] + [ROOT / "app.py"]


def test_no_module_but_settings_reads_the_environment():
    readers = []
    for path in CODE:
        if path == ROOT / "model" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            call = node if isinstance(node, ast.Call) else None
            if call is None or not isinstance(call.func, ast.Attribute):
                continue
            target = ast.unparse(call.func)
            if target in ("os.environ.get", "os.getenv") or (target.startswith("os.environ") and
                                                                call.func.attr in ("get", "__getitem__")):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not readers, f"environment read outside model/settings.py: {readers}"


def test_every_setting_named_in_the_code_is_registered():
    named = set()
    for path in CODE:
        named |= set(re.findall(r"settings\.\w+\(\s*\"([A-Z_]+)\"", path.read_text()))
    assert named, "no setting read through model.settings"
    assert named <= set(settings.BY_NAME), named - set(settings.BY_NAME)
    unused = set(settings.BY_NAME) - named
    assert not unused, f"registered but never read: {unused}"


def test_the_deploying_page_shows_the_registry():
    text = (ROOT / "docs" / "deploying.md").read_text()
    block = text.split("<!-- settings:begin -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert block == settings.markdown_table(), "docs/deploying.md is stale: run python -m model.settings"


def test_reading_a_setting(monkeypatch):
    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", "1.5")
    assert settings.megabytes("INSPECTOR_MAX_CAPTURE_MB") == int(1.5 * 2**20)
    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", "lots")  # not a number: the default
    assert settings.megabytes("INSPECTOR_MAX_CAPTURE_MB") == 256 * 2**20
    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", "-3")
    assert settings.megabytes("INSPECTOR_MAX_CAPTURE_MB") == 0
    monkeypatch.setenv("ATTN_WORKERS", "0")
    assert settings.count("ATTN_WORKERS") == 1
    monkeypatch.delenv("ATTN_TORCH_THREADS_BIG", raising=False)
    assert settings.count("ATTN_TORCH_THREADS_BIG", 7) == 7
    monkeypatch.setenv("INSPECTOR_PUBLIC", " Yes ")
    assert settings.flag("INSPECTOR_PUBLIC")
    monkeypatch.setenv("INSPECTOR_ALLOWED_ROOTS", f"/a{__import__('os').pathsep}{__import__('os').pathsep}/b ")
    assert settings.paths("INSPECTOR_ALLOWED_ROOTS") == ["/a", "/b"]
    with pytest.raises(KeyError):
        settings.raw("INSPECTOR_NO_SUCH_SETTING")


def test_the_settings_and_the_package_import_without_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, model, model.settings; print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
