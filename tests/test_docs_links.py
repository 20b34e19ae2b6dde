"""The documentation links only inside the repository, and every link lands: the file
exists and, for `file#anchor`, the heading exists (GitHub's anchor rules)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/API.md", "docs/SCALE-OUT.md", "docs/BACKUP.md", "packaging/README.md", "bench/RESULTS.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    seen: dict[str, int] = {}
    out = set()
    fence = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"#{1,6} (.*)", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(doc: Path):
    fence = False
    for n, line in enumerate(doc.read_text(encoding="utf-8").split("\n"), 1):
        if line.startswith("```"):
            fence = not fence
        if not fence:
            for m in LINK.finditer(line):
                yield n, m.group(1)


@pytest.mark.parametrize("name", DOCS)
def test_links_stay_inside_and_land(name):
    doc = REPO / name
    bad = []
    for n, target in links(doc):
        where = f"{name}:{n}: {target}"
        if re.match(r"[a-z]+:", target):
            bad.append(f"{where} leaves the repository")
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if REPO not in path.parents and path != REPO:
            bad.append(f"{where} points outside the repository")
        elif not path.exists():
            bad.append(f"{where}: no such file")
        elif anchor and anchor not in anchors(path):
            bad.append(f"{where}: no heading with that anchor")
    assert not bad, "\n".join(bad)


def test_readme_names_no_outside_paths():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in text
