"""The documents: a README short enough to read, with the block of headline results that
benchmarks/ regenerates, and relative links in the README and docs/ that all lead somewhere."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 15_000
RESULTS_BEGIN, RESULTS_END = "<!-- results:begin -->", "<!-- results:end -->"

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans, where a bracket is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them (lower case, punctuation
    dropped, spaces as hyphens)."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes; the rest belongs in docs/"


def test_the_readme_holds_one_results_block_between_its_markers():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines.count(RESULTS_BEGIN) == 1 and lines.count(RESULTS_END) == 1
    begin, end = lines.index(RESULTS_BEGIN), lines.index(RESULTS_END)
    block = [line for line in lines[begin + 1:end] if line.strip()]
    assert len(block) > 3 and all(line.startswith("|") for line in block[:-1]), "a table between the markers"
    assert "benchmarks/results.md" in block[-1], "the block's last line says where the figures come from"


def test_the_link_finder_sees_links_and_skips_code():
    assert LINK.findall(prose("see [a](docs/a.md#x) and ![b](images/b.png \"t\")")) == ["docs/a.md#x", "images/b.png"]
    assert LINK.findall(prose("`[a](nowhere.md)`\n```\n[b](nowhere.md)\n```\n")) == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.relative_to(ROOT).as_posix() for p in DOCUMENTS])
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path):
    links = relative_links(path)
    broken = []
    for target in links:
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)
