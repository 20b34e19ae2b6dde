"""The data directory's owner lock: one `cdragon serve` per data_dir.

Owns `<data_dir>/cdragon.lock`, an advisory lock (flock) taken before LMDB is opened
and held, through one open file descriptor, for the life of the serving process. The
file holds the owner's PID, so that a second server on the same directory can name it.
The kernel drops the lock when the process exits, however it exits (SIGKILL and
crashes too): a stale file left behind is never mistaken for a running owner.

Never removes the lock file (a second process could then lock a fresh file while the
first still holds the old one), never opens LMDB, never logs: failures are exceptions
whose text is the one line the command prints (cdragon.cli maps them to exit codes).
"""
from __future__ import annotations

import errno
import fcntl
import os
import pwd
import time

LOCK_NAME = "cdragon.lock"


class DataDirBusy(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, path: str, pid: int | None):
        self.pid = pid
        who = f"PID {pid}" if pid else "PID unknown"
        super().__init__(f"data directory {path} is in use by another cdragon process ({who}); "
                         "stop that one or give this one another data_dir")


class DataDirUnusable(Exception):
    """The data directory cannot be created, read or written, or holds data this build
    cannot open."""


def describe(path: str, err: BaseException) -> str:
    """One line saying why `path` cannot be used, for an OSError (or any error whose
    text is already a sentence, e.g. a schema mismatch)."""
    if not isinstance(err, OSError) or err.errno is None:
        text = str(err)   # e.g. StorageError's schema mismatch, which names the directory
        return text if path in text else f"cannot use data directory {path}: {text}"
    if err.errno == errno.EROFS:
        return (f"cannot use data directory {path}: it is on a read-only file system (under "
                "systemd's ProtectSystem=strict the directory must exist and be listed in "
                "ReadWritePaths=, see packaging/README.md)")
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        if os.path.lexists(path) and not os.path.isdir(path):
            return f"cannot use data directory {path}: it exists and is not a directory"
        if err.errno == errno.ENOTDIR:
            return f"cannot use data directory {path}: a parent of it is not a directory"
    where = f" ({err.filename})" if err.filename and err.filename != path else ""
    why = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM):
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = str(os.geteuid())
        why += f" for user {user}"
    return f"cannot use data directory {path}: {why}{where}"


def _read_pid(fd: int) -> int | None:
    """The PID the lock's owner wrote. It writes it just after taking the lock, so an
    empty file is read again for a moment before giving up."""
    for _ in range(50):
        try:
            raw = os.pread(fd, 32, 0)
        except OSError:
            return None
        if raw.strip():
            try:
                return int(raw)
            except ValueError:
                return None
        time.sleep(0.01)
    return None


def lock(path: str) -> int:
    """Create `path` if needed and take its lock; returns the descriptor to keep open
    for as long as the process owns the directory (close it, or exit, to release).
    Raises DataDirBusy or DataDirUnusable."""
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        os.makedirs(path, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise DataDirUnusable(describe(path, e)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise DataDirBusy(path, pid) from None
    except OSError as e:
        os.close(fd)
        raise DataDirUnusable(describe(path, e)) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise DataDirUnusable(describe(path, e)) from None
    return fd
