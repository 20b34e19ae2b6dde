"""The pins file: HAProxy's map of account -> instance name, consulted before the hash.

One line per account, `ACCOUNT NAME`, sorted; `#` lines are comments (HAProxy's map
format, read by the `map()` converter when HAProxy starts or reloads). Every change
is written to a temporary file beside it, fsync'd and renamed over it (then the
directory fsync'd), so HAProxy or a crash never sees half a file; writers take an
flock on `FILE.lock` so two commands never lose each other's pins.

Owns the file only. The running HAProxy learns the same changes through its runtime
API (cdragon.shard.runtime); callers write the file first, then tell HAProxy, so a
restart of HAProxy never forgets a pin it was already routing by.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re

ACCOUNT_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")    # API.md "Accounts"
HEADER = ("# cdragon pins: account -> instance name (HAProxy map file).\n"
          "# Written by `cdragon shard pin-all` / `cdragon shard move`; an account not listed\n"
          "# goes to instance number crc32(account) mod N (see haproxy.cfg).\n")


class PinsError(Exception):
    """The pins file cannot be read or written, or holds a line that is no pin."""


def read(path: str) -> dict[str, str]:
    """The pins, account -> name ({} for a missing file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise PinsError(f"cannot read the pins file {path}: {e}") from None
    pins = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not ACCOUNT_RE.fullmatch(parts[0]):
            raise PinsError(f"{path} line {n}: expected 'ACCOUNT NAME', got {line!r}")
        pins[parts[0]] = parts[1]
    return pins


@contextlib.contextmanager
def locked(path: str):
    """Hold the pins file's writer lock (an flock on FILE.lock, kept beside it: the
    file itself is replaced by rename, so it cannot carry the lock)."""
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise PinsError(f"cannot lock the pins file {path}: {e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: str, pins: dict[str, str]) -> None:
    text = HEADER + "".join(f"{acc} {name}\n" for acc, name in sorted(pins.items()))
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise PinsError(f"cannot write the pins file {path}: {e}") from None


def ensure(path: str) -> None:
    """Create an empty pins file if there is none (HAProxy refuses a missing map)."""
    if not os.path.exists(path):
        with locked(path):
            if not os.path.exists(path):
                _write(path, {})


def update(path: str, changes: dict[str, str]) -> dict[str, str]:
    """Set these pins (account -> name), keep every other one; returns the whole map."""
    for acc in changes:
        if not ACCOUNT_RE.fullmatch(acc):
            raise PinsError(f"{acc!r} is not an account name")
    with locked(path):
        pins = read(path)
        pins.update(changes)
        _write(path, pins)
    return pins


def set_pin(path: str, account: str, name: str) -> None:
    """Pin one account (what `shard move` does once the account is on `name`)."""
    update(path, {account: name})
