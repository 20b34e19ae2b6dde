"""README.md's bash lock guard (`locked.sh NAME COMMAND...`), run as printed against
the shared server: one copy at a time, the error's JSON on stderr for the loser, the
lock kept alive while the command runs past the lock's duration and released at the
end, and an owner name also where HOSTNAME is unset or empty (sh, cron)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from readme_blocks import README, code_blocks, section

NODE = os.uname().nodename


def guard_script() -> str:
    first, lines = section(README.read_text(encoding="utf-8"), "#### The bash lock guard")
    blocks = code_blocks(first, lines, "bash")
    assert len(blocks) == 1, "the guard section holds exactly one bash block"
    text = "\n".join(blocks[0][1]) + "\n"
    assert text.startswith("#!/usr/bin/env bash\n")
    return text


@pytest.fixture
def guard(tmp_path, server, acc):
    """run(name, command, shell=..., env=...) starts the guard as a process."""
    path = tmp_path / "locked.sh"
    path.write_text(guard_script(), encoding="utf-8")
    path.chmod(0o755)
    procs = []

    def start(lock: str, *command: str, shell: str = "bash", env: dict | None = None,
              unset: tuple[str, ...] = ()) -> subprocess.Popen:
        e = {k: v for k, v in os.environ.items() if k not in unset}
        e.update({"CDRAGON_URL": f"http://127.0.0.1:{server.port}", "CDRAGON_ACCOUNT": acc})
        e.update(env or {})
        p = subprocess.Popen([shell, str(path), lock, *command], env=e, cwd=str(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_for(path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def lock_state(client, acc, name):
    r = client.get(f"/db/{acc}/lock/{name}")
    assert r.status == 200, r
    return r.json


def job(tmp_path, tag: str) -> list[str]:
    """A command that notes it started, then runs until the test creates `release`."""
    return ["sh", "-c", f'echo "$$" > {tmp_path}/{tag}.started; '
            f'while [ ! -e {tmp_path}/release ]; do sleep 0.05; done; echo {tag} >> {tmp_path}/ran']


def test_one_copy_runs_the_other_gets_the_409_on_stderr(guard, tmp_path, client, acc):
    first = guard("nightly", *job(tmp_path, "a"))
    wait_for(tmp_path / "a.started")
    state = lock_state(client, acc, "nightly")
    assert state["Locked"] is True and state["Owner"] == f"{NODE}-{first.pid}", state

    second = guard("nightly", *job(tmp_path, "b"))
    out, err = second.communicate(timeout=30)
    assert second.returncode != 0
    assert not (tmp_path / "b.started").exists(), "the second copy ran its command"
    lines = [ln for ln in err.decode().splitlines() if ln.startswith("{")]
    assert len(lines) == 1, err
    body = json.loads(lines[0])
    assert body["Code"] == "locked" and isinstance(body["Till"], (int, float)), body

    (tmp_path / "release").touch()
    out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    assert (tmp_path / "ran").read_text() == "a\n"
    assert lock_state(client, acc, "nightly") == {"Locked": False}


def test_the_lock_outlives_its_duration_while_the_command_runs(guard, tmp_path, client, acc):
    # LOCK_DUR=3: without the keeper the lock would be free after 3 s
    first = guard("long", *job(tmp_path, "a"), env={"LOCK_DUR": "3"})
    wait_for(tmp_path / "a.started")
    till0 = lock_state(client, acc, "long")["Till"]
    time.sleep(5)
    state = lock_state(client, acc, "long")
    assert state["Locked"] is True and state["Till"] > till0, (till0, state)
    second = guard("long", "true")
    second.communicate(timeout=30)
    assert second.returncode != 0
    (tmp_path / "release").touch()
    first.communicate(timeout=30)
    assert first.returncode == 0
    assert lock_state(client, acc, "long") == {"Locked": False}


def test_the_command_status_comes_back_and_the_lock_is_released(guard, client, acc):
    p = guard("failing", "sh", "-c", "exit 7")
    p.communicate(timeout=30)
    assert p.returncode == 7
    assert lock_state(client, acc, "failing") == {"Locked": False}


def test_sigterm_stops_the_command_and_releases_the_lock(guard, tmp_path, client, acc):
    p = guard("stopped", *job(tmp_path, "a"))
    wait_for(tmp_path / "a.started")
    child = int((tmp_path / "a.started").read_text())
    p.terminate()
    p.communicate(timeout=30)
    assert p.returncode != 0
    assert lock_state(client, acc, "stopped") == {"Locked": False}
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.parametrize("shell,unset,env", [
    ("bash", ("HOSTNAME",), {}),             # bash sets HOSTNAME itself
    ("bash", (), {"HOSTNAME": ""}),          # set but empty
    ("sh", ("HOSTNAME",), {}),               # dash sets no HOSTNAME
], ids=["bash-unset", "bash-empty", "sh-unset"])
def test_without_hostname(guard, tmp_path, client, acc, shell, unset, env):
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell}")
    p = guard("nohost", *job(tmp_path, "a"), shell=shell, unset=unset, env=env)
    wait_for(tmp_path / "a.started")
    state = lock_state(client, acc, "nohost")
    assert state["Owner"] == f"{NODE}-{p.pid}", state
    (tmp_path / "release").touch()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert lock_state(client, acc, "nohost") == {"Locked": False}
