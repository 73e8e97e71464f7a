"""The documentation: README.md is a front door (short, with the two set-up commands as they are), and every relative
link or image in README.md, CHANGELOG.md and docs/*.md opens a file that exists, at a heading that exists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 250

# The README's two set-up commands, as a fresh clone runs them: change them here only together with the README.
START_THE_APP = ("python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt"
                 " && streamlit run app.py")
RUN_THE_TESTS = ("python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements-dev.txt"
                 " && python -m pytest")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text] or ![alt], one level of nested brackets
                  r"\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)"  # (target), balanced parentheses inside
                  r"(?:\s+[\"'(][^)]*)?\)")  # an optional title
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*(?:name|id)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def documents() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
        elif fence is not None and m and m.group(1).startswith(fence):
            fence = None
        elif fence is None:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered (link text kept, code marks dropped), lowercased, spaces to
    '-', every other character that is not a letter, digit, '-' or '_' dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).lower()
    return "".join("-" if c == " " else c for c in text if c in " -_" or c.isalnum())


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file: its headings' slugs (a repeated slug gets -1, -2... as on GitHub) and explicit
    HTML anchors."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code."""
    out = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            out.append((number, m.group(1).strip("<>")))
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of one file: a missing file, or a #fragment its target has no heading
    for. Links with a scheme (https:, mailto:) are not checked."""
    problems = []
    for number, target in links(path):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
            continue
        where = f"{path.relative_to(root)}:{number}: {target}"
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not target:
            problems.append(f"{where}: an empty link")
        elif not dest.exists():
            problems.append(f"{where}: no such file")
        elif fragment:
            if dest.suffix.lower() != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif unquote(fragment).lower() not in anchors(dest):
                problems.append(f"{where}: no heading {fragment!r} in {dest.name}")
    return problems


def code_blocks(text: str) -> list[str]:
    """The contents of every fenced code block, stripped."""
    blocks, current, fence = [], [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence, current = m.group(1)[0] * len(m.group(1)), []
        elif fence is not None and m and m.group(1).startswith(fence):
            blocks.append("\n".join(current).strip())
            fence = None
        elif fence is not None:
            current.append(line)
    return blocks


def test_every_relative_link_and_image_resolves():
    docs = documents()
    assert (ROOT / "CHANGELOG.md").is_file() and len(docs) > 2, "README.md, CHANGELOG.md and docs/*.md"
    problems = [problem for doc in docs for problem in broken_links(doc)]
    assert problems == [], "\n".join(problems)
    assert sum(len(links(doc)) for doc in docs) > 50  # the check ran on the documents' links, not on nothing


def test_the_link_check_finds_a_missing_file_a_wrong_anchor_and_skips_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(
        "# The app\n\n## Links and saved sessions (`ui/links.py`)\n\n## Notes\n\n## Notes\n\n"
        "```bash\n# not a heading\n```\n", encoding="utf-8")
    doc = tmp_path / "README.md"
    doc.write_text(
        "[ok](docs/guide.md#links-and-saved-sessions-uilinkspy) [ok](docs/guide.md#notes-1) [ok](#a-section)\n"
        "[gone](docs/missing.md) [wrong](docs/guide.md#links) ![picture](docs/images/none.png)\n"
        "[code heading](docs/guide.md#not-a-heading) [web](https://example.com/x#y) `[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n## A section\n", encoding="utf-8")
    problems = broken_links(doc, root=tmp_path)
    assert [p.split(": ")[1] for p in problems] == [
        "docs/missing.md", "docs/guide.md#links", "docs/images/none.png", "docs/guide.md#not-a-heading"], problems
    assert slug("Set up (fresh clone, Python 3.11)") == "set-up-fresh-clone-python-311"
    assert slug("The app's server (`bench_app`)") == "the-apps-server-bench_app"
    assert slug("2026-12-01: long inputs, the canvas") == "2026-12-01-long-inputs-the-canvas"


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move the detail into docs/"
    assert "![" in README.read_text(encoding="utf-8") and any("](docs/" in line for line in lines)


def test_the_readme_holds_the_two_set_up_commands_verbatim():
    """The set-up section's code blocks are exactly the two commands a fresh clone runs, and what they name exists."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Set up (fresh clone, Python 3.11)", 1)
    assert len(section) == 2, "the README's set-up section is gone"
    blocks = code_blocks(section[1].split("\n## ", 1)[0])
    assert blocks == [START_THE_APP, RUN_THE_TESTS]
    for name in ("requirements.txt", "requirements-dev.txt", "app.py"):
        assert (ROOT / name).is_file(), name
