"""bench/RESULTS.md is shared by several runners; each owns one section between
`<!-- NAME:begin -->` and `<!-- NAME:end -->` and replaces only that (appending it the
first time), so no runner erases another's numbers."""
from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, name: str, section: str) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{section.strip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old and old.index(begin) < old.index(end):
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old.strip() else "") + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(path)
