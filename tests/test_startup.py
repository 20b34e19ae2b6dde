"""Start-up failures (issue #11): the data directory's owner lock, and one stderr line
plus a documented exit code for each way `cdragon serve` can fail to start
(cdragon/cli.py EXIT_*: 3 data dir in use, 4 data dir unusable, 5 cannot listen).

Every test starts the real server as a subprocess; the refused start must exit by
itself, with exactly one line on stderr and no traceback.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from helpers import REPO, free_port, unique_account

from cdragon.cli import EXIT_CANNOT_LISTEN, EXIT_DATA_DIR_BUSY, EXIT_DATA_DIR_UNUSABLE


def serve_cmd(data_dir, listen: str | None = None) -> list[str]:
    return [sys.executable, "-m", "cdragon", "serve",
            "--listen", listen or f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir)]


def refused(cmd: list[str], expect_code: int) -> str:
    """Run a start that must fail; returns its one stderr line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    p = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == expect_code, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("cdragon: "), lines
    assert p.stdout == "", p.stdout
    return lines[0]


def write_and_read(srv) -> None:
    c = srv.client(timeout=10)
    try:
        acc = unique_account("startup")
        assert c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": 1}]}) == {"KVSet": [{"Key": "k", "Version": 1}], "Rev": 1}
        assert c.kv(acc, "k") == {"Key": "k", "Value": 1, "Version": 1}
    finally:
        c.close()


# --------------------------------------------------------------------------- exit 3


def test_second_server_on_the_same_data_dir_is_refused_naming_the_first(server_factory):
    first = server_factory()
    write_and_read(first)
    line = refused(serve_cmd(first.data_dir), EXIT_DATA_DIR_BUSY)
    assert f"PID {first.proc.pid}" in line, line
    assert first.data_dir in line, line
    # the lock file names the owner; the first server keeps serving, writes and reads
    assert Path(first.data_dir, "cdragon.lock").read_text().strip() == str(first.proc.pid)
    write_and_read(first)
    first.assert_alive()
    # and still owns the directory
    refused(serve_cmd(first.data_dir), EXIT_DATA_DIR_BUSY)


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_the_lock_goes_with_the_process(server_factory, hard):
    """After a clean stop or a SIGKILL, the lock file left behind does not block the
    next start, which then owns the directory."""
    srv = server_factory()
    old_pid = srv.proc.pid
    srv.restart(hard=hard)
    assert srv.proc.pid != old_pid
    assert Path(srv.data_dir, "cdragon.lock").read_text().strip() == str(srv.proc.pid)
    write_and_read(srv)
    line = refused(serve_cmd(srv.data_dir), EXIT_DATA_DIR_BUSY)
    assert f"PID {srv.proc.pid}" in line, line


# --------------------------------------------------------------------------- exit 5


def test_port_in_use(server_factory, tmp_path):
    first = server_factory()
    line = refused(serve_cmd(tmp_path / "other", f"127.0.0.1:{first.port}"), EXIT_CANNOT_LISTEN)
    assert f"127.0.0.1:{first.port}" in line and "in use" in line, line
    first.assert_alive()


def test_address_not_on_this_host(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the bind fails locally
    line = refused(serve_cmd(tmp_path / "d", f"192.0.2.1:{free_port()}"), EXIT_CANNOT_LISTEN)
    assert "cannot listen on 192.0.2.1:" in line, line


# --------------------------------------------------------------------------- exit 4


def test_schema_mismatch(server_factory):
    srv = server_factory()
    write_and_read(srv)
    assert srv.terminate() == 0
    env = lmdb.open(srv.data_dir, max_dbs=16)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"schema", b"99")
    env.close()
    line = refused(serve_cmd(srv.data_dir), EXIT_DATA_DIR_UNUSABLE)
    assert "schema" in line and "99" in line and srv.data_dir in line, line


def test_data_dir_is_a_regular_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("not a directory\n")
    line = refused(serve_cmd(f), EXIT_DATA_DIR_UNUSABLE)
    assert f"{f}: it exists and is not a directory" in line, line


def test_data_dir_cannot_be_created(tmp_path):
    f = tmp_path / "file"
    f.write_text("not a directory\n")
    line = refused(serve_cmd(f / "sub"), EXIT_DATA_DIR_UNUSABLE)
    assert f"{f / 'sub'}: a parent of it is not a directory" in line, line


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to switch user / mount)")


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_data_dir_without_permission(tmp_path):
    """Run as `nobody` (root may write anywhere): a directory only root may enter."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    ancestors = (tmp_path, tmp_path.parent, tmp_path.parent.parent)   # pytest makes them 0700
    modes = [d.stat().st_mode & 0o7777 for d in ancestors]
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *serve_cmd(private / "data")]
    try:
        for d in ancestors:   # let nobody reach `private`, and no further
            d.chmod(d.stat().st_mode | 0o055)
        line = refused(cmd, EXIT_DATA_DIR_UNUSABLE)
    finally:
        for d, mode in zip(ancestors, modes):
            d.chmod(mode)
    assert "Permission denied" in line and str(private / "data") in line, line


def _can_mount_read_only(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs -o ro tmpfs '{where}'"],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return p.returncode == 0


@needs_root
def test_read_only_file_system_names_read_write_paths(tmp_path):
    """A read-only mount in a private mount namespace (gone when the process exits),
    as a data_dir outside ReadWritePaths= looks under ProtectSystem=strict."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if not _can_mount_read_only(ro):
        pytest.skip("cannot mount in a private mount namespace here")
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
           f"mount -t tmpfs -o ro tmpfs '{ro}' && exec \"$@\"", "sh", *serve_cmd(ro / "data")]
    line = refused(cmd, EXIT_DATA_DIR_UNUSABLE)
    assert "read-only file system" in line and "ReadWritePaths=" in line, line
    assert not os.path.ismount(ro)   # the mount stayed in its namespace


# --------------------------------------------------------------------------- thread names


def test_background_threads_carry_their_names_in_the_os(server):
    """top -H and ps -L tell the log writer from the checkpoint: each background thread
    names itself in /proc (cdragon/osthread.py); the event loop's thread keeps the
    process's name."""
    task = Path(f"/proc/{server.proc.pid}/task")
    names = sorted((t / "comm").read_text().strip() for t in task.iterdir())
    assert "cdragon-writer" in names, names
    assert "cdragon-ckpt" in names, names
    main = (task / str(server.proc.pid) / "comm").read_text().strip()
    assert not main.startswith("cdragon-"), main
    write_and_read(server)          # named threads, and the server writes and reads as before


def test_a_thread_that_cannot_name_itself_still_runs(monkeypatch):
    """Where /proc cannot be written the thread keeps Python's name and runs all the same."""
    import threading
    from cdragon import osthread
    ran = []
    monkeypatch.setattr(osthread.threading, "get_native_id", lambda: -1)   # no such task
    t = osthread.named_thread(lambda: ran.append(threading.current_thread().name), "cdragon-test")
    t.start()
    t.join(5)
    assert ran == ["cdragon-test"]
    assert t.daemon
