"""README.md's "A tour with curl", run as printed against a fresh server.

Every `sh` block of the tour runs in one bash (so variables such as the lock handle
carry over), with the `URL=` line pointed at a server on a free port and a fresh data
directory. Each step's printed answer is checked against the README's `# ->` lines
(the convention is in tests/readme_blocks.py and in the README itself). One test per
step, so a failure names the README line whose answer drifted.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from helpers import Server
from readme_blocks import README, answer_problems, code_blocks, section, steps

TOUR_HEADING = "## A tour with curl"
URL_LINE = "URL=http://127.0.0.1:8081"
MARK = "\x1e"            # separates the steps' outputs (never printed by the tour)


def tour_steps():
    first, lines = section(README.read_text(encoding="utf-8"), TOUR_HEADING)
    return steps(code_blocks(first, lines, "sh"))


STEPS = tour_steps()


def script(url: str) -> str:
    """The whole tour as one bash script that prints a marker before each step, on
    stdout and on stderr."""
    parts = []
    found = 0
    for i, step in enumerate(STEPS):
        parts.append(f"printf '{MARK}%d{MARK}' {i}; printf '{MARK}%d{MARK}' {i} >&2")
        for line in step.commands:
            if line.strip() == URL_LINE:
                line = f"URL={url}"
                found += 1
            parts.append(line)
    assert found == 1, f"the tour must set {URL_LINE!r} exactly once (found {found})"
    parts.append(f"wait; printf '{MARK}end{MARK}'")
    return "\n".join(parts) + "\n"


def split(out: str) -> dict[int, str]:
    chunks = re.split(f"{MARK}([0-9]+|end){MARK}", out)
    # chunks: [before, id0, text0, id1, text1, ..., "end", after]
    got = {}
    for ident, text in zip(chunks[1::2], chunks[2::2]):
        if ident != "end":
            got[int(ident)] = text
    return got


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """Run the tour once against its own fresh server: {step index: (stdout, stderr)}."""
    assert shutil.which("curl"), "the tour needs curl"
    base = tmp_path_factory.mktemp("readme-tour")
    srv = Server(base / "data", base / "logs")
    srv.start()
    try:
        path = base / "tour.sh"
        path.write_text(script(f"http://127.0.0.1:{srv.port}"), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
        proc = subprocess.run(["bash", str(path)], cwd=str(base), env=env, capture_output=True,
                              timeout=180)
        out = split(proc.stdout.decode("utf-8", "replace"))
        err = split(proc.stderr.decode("utf-8", "replace"))
        yield {i: (out.get(i), err.get(i, "")) for i in range(len(STEPS))}
    finally:
        srv.kill()


def test_the_tour_is_there():
    assert len(STEPS) >= 40, [s.name for s in STEPS]
    assert all(s.commands for s in STEPS)
    assert sum(1 for s in STEPS for c in s.commands if c.strip() == URL_LINE) == 1


@pytest.mark.parametrize("index", range(len(STEPS)), ids=[s.name for s in STEPS])
def test_tour_step(tour, index):
    step = STEPS[index]
    printed, stderr = tour[index]
    assert printed is not None, f"the tour stopped before README line {step.line}"
    problems = answer_problems(step, printed)
    assert not problems, (
        f"README line {step.line}:\n" + "\n".join(step.commands) + "\n"
        + "\n".join(f"  - {p}" for p in problems)
        + f"\nprinted: {printed!r}\nstderr: {stderr!r}")
