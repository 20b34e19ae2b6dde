"""README.md's code blocks, read for the tests that run them (test_readme_tour.py,
test_readme_guard.py), and the answer convention of the tour.

The convention (also described in README.md, "How the tour is tested"):
- `# -> TEXT` is one line of the answer printed by the commands above it; `# ->` alone
  is an empty line; `#` plus four spaces continues the answer line before it.
- A step is the lines up to and including one group of answer lines; a step whose
  commands are followed by no answer line must print nothing.
- `...` as a JSON value matches any value; inside a JSON string or a text line it
  matches any text.

This module only reads text; it never runs anything.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

ANSWER = "# ->"
CONTINUATION = "#    "


def section(text: str, heading: str) -> tuple[int, list[str]]:
    """The lines under `heading` (a whole heading line such as "## A tour with curl") up
    to the next heading of the same or a higher level, with the 1-based line number
    of the first of them."""
    lines = text.split("\n")
    level = len(heading) - len(heading.lstrip("#"))
    start = lines.index(heading) + 1
    end = len(lines)
    fence = False
    for i in range(start, len(lines)):
        if lines[i].startswith("```"):
            fence = not fence
        if fence:
            continue
        m = re.match(r"(#+) ", lines[i])
        if m and len(m.group(1)) <= level:
            end = i
            break
    return start + 1, lines[start:end]


def code_blocks(first_line: int, lines: list[str], lang: str) -> list[tuple[int, list[str]]]:
    """Every ```lang block in `lines`: (line number of its first code line, its lines)."""
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```" + lang:
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            blocks.append((first_line + i + 1, lines[i + 1:j]))
            i = j
        i += 1
    return blocks


@dataclass
class Step:
    line: int                      # README line of the step's first command
    commands: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        first = next((c for c in self.commands if c.strip() and not c.lstrip().startswith("#")), "")
        first = re.sub(r"\s+#.*$", "", first.strip())
        return f"L{self.line}: {first[:70]}"


def steps(blocks: list[tuple[int, list[str]]]) -> list[Step]:
    """The tour's steps, in order, from its blocks."""
    out: list[Step] = []
    for first, lines in blocks:
        cur: Step | None = None
        for n, line in enumerate(lines, start=first):
            if line.startswith(ANSWER):
                assert cur is not None, f"README line {n}: an answer with no command before it"
                cur.answer.append(line[len(ANSWER):].removeprefix(" "))
            elif line.startswith(CONTINUATION) and cur is not None and cur.answer and \
                    lines[n - first - 1].startswith((ANSWER, CONTINUATION)):
                cur.answer[-1] += line[1:].strip()
            else:
                if cur is not None and cur.answer:
                    out.append(cur)
                    cur = None
                if cur is None:
                    if not line.strip():
                        continue
                    cur = Step(n)
                cur.commands.append(line)
        if cur is not None and any(c.strip() and not c.lstrip().startswith("#") for c in cur.commands):
            out.append(cur)
    return out


# --------------------------------------------------------------------------- matching

class _Any:
    def __repr__(self):
        return "..."


ANY = _Any()
_SENTINEL = "\u0000ANY\u0000"


class Glob:
    """A string with `...` in it: `...` matches any text."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.regex = re.compile(".*".join(re.escape(p) for p in pattern.split("...")), re.S)

    def matches(self, s) -> bool:
        return isinstance(s, str) and self.regex.fullmatch(s) is not None

    def __repr__(self):
        return repr(self.pattern)


def _mark_bare_dots(text: str) -> str:
    """Replace each `...` outside JSON strings by a sentinel string."""
    out = []
    i, n, in_str = 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("...", i):
            out.append(json.dumps(_SENTINEL))
            i += 2
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _patterns(v):
    if isinstance(v, str):
        if v == _SENTINEL:
            return ANY
        return Glob(v) if "..." in v else v
    if isinstance(v, list):
        return [_patterns(x) for x in v]
    if isinstance(v, dict):
        return {k: _patterns(x) for k, x in v.items()}
    return v


def expected_json(line: str):
    """The line as a JSON pattern, or None when it is not JSON (a text line)."""
    try:
        return _patterns(json.loads(_mark_bare_dots(line)))
    except ValueError:
        return None


def json_matches(pattern, value) -> bool:
    if pattern is ANY:
        return True
    if isinstance(pattern, Glob):
        return pattern.matches(value)
    if isinstance(pattern, dict):
        return (isinstance(value, dict) and pattern.keys() == value.keys()
                and all(json_matches(pattern[k], value[k]) for k in pattern))
    if isinstance(pattern, list):
        return (isinstance(value, list) and len(pattern) == len(value)
                and all(json_matches(p, v) for p, v in zip(pattern, value)))
    return type(pattern) is type(value) and pattern == value


def line_matches(expected: str, actual: str) -> bool:
    """One printed line against one answer line of the README."""
    pattern = expected_json(expected)
    if pattern is not None:
        try:
            value = json.loads(actual)
        except ValueError:
            return False
        return json_matches(pattern, value)
    actual = actual.removesuffix("\r")
    return Glob(expected).matches(actual) if "..." in expected else expected == actual


def answer_problems(step: Step, printed: str) -> list[str]:
    """Why `printed` is not the answer the README shows for `step` (empty: it is)."""
    lines = printed.split("\n")
    if printed.endswith("\n"):
        lines.pop()
    elif not printed:
        lines = []
    problems = []
    if len(lines) != len(step.answer):
        problems.append(f"{len(lines)} line(s) printed, the README shows {len(step.answer)}")
    for i, (want, got) in enumerate(zip(step.answer, lines)):
        if not line_matches(want, got):
            problems.append(f"line {i + 1}: README shows {want!r}, printed {got!r}")
    if step.answer and not problems and expected_json(step.answer[-1]) is not None \
            and step.answer[-1].lstrip().startswith(("{", "[")) and not printed.endswith("\n"):
        problems.append("the JSON answer does not end with a newline")
    return problems
