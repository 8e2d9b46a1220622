"""The documentation leads somewhere: every relative link of README.md and docs/*.md, and every docs page
the code names, exists (and so does a link's #anchor, as GitHub makes anchors from headings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

CODE_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INDENTED_BLOCK = re.compile(r"(?:^(?: {4}|\t).*\n?)+", re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def prose(text: str) -> str:
    """The text without code (a link shown in a code block or span is an example, not a link)."""
    text = CODE_BLOCK.sub("", text)
    text = INDENTED_BLOCK.sub("", text)
    return CODE_SPAN.sub("", text)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for line in CODE_BLOCK.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).replace("`", "").lower()).replace(" ", "-")
            candidate, n = slug, 1
            while candidate in found:
                candidate, n = f"{slug}-{n}", n + 1
            found.add(candidate)
    return found


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_points_at_something_that_exists(page):
    targets = LINK.findall(prose(page.read_text()))
    broken = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading makes #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_links_every_docs_page():
    readme = prose((ROOT / "README.md").read_text())
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md does not link {missing}"


def test_docs_pages_named_in_the_code_exist():
    named = set()
    for folder in ("src", "tests", "scripts", "benchmarks"):
        for file in (ROOT / folder).rglob("*"):
            if file.suffix in {".py", ".toml", ".html", ".js"} and file.is_file():
                named.update((m, file.relative_to(ROOT)) for m in re.findall(r"\bdocs/[\w.-]+\.md\b", file.read_text()))
    assert named, "the code names no docs page: is this test looking in the right place?"
    missing = sorted(f"{file}: {name}" for name, file in named if not (ROOT / name).is_file())
    assert not missing, f"pages named in the code but absent: {missing}"


def test_the_link_checker_sees_links_and_ignores_code():
    text = "see [a](guide/a.md) and ![b](pictures/b.png)\n\n```\n[c](nowhere.md)\n```\n`[d](nowhere.md)`\n"
    assert LINK.findall(prose(text)) == ["guide/a.md", "pictures/b.png"]


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_examples_in_the_docs_run(page, tmp_path, monkeypatch, testdata):
    # the examples read "in.jpg": a real photo (SOURCES.md: jpeg-png/2569067123_aca715a2ee_o.jpg)
    (tmp_path / "in.jpg").write_bytes(testdata("jpeg-png/2569067123_aca715a2ee_o.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)
    for block in python_blocks(page):
        exec(compile(block, f"{page.name} example", "exec"), {})
