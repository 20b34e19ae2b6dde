"""HAProxy's runtime API (the `stats socket ... level admin` of our haproxy.cfg): change
the pins map of a running HAProxy without a reload.

- `set_pin`: one account, `set map` (or `add map` when the account has no entry yet):
  the entry changes in place, so no request in between falls back to the hash.
- `replace_map`: the whole map at once, `prepare map` / `add map @VERSION` / `commit map`:
  requests see the old map or the new one, never a half-loaded one.

The map is named by the path haproxy.cfg loads it from (an absolute path: our config
writes os.path.abspath of --pins). Owns no state; never touches the pins file.
"""
from __future__ import annotations

import socket

# one CLI line is at most HAProxy's bufsize (16 KiB by default): batches stay far below
_BATCH_BYTES = 8000


class HAProxyError(Exception):
    """HAProxy's socket is unreachable or refused a command."""


def command(socket_path: str, line: str, timeout: float = 10.0) -> str:
    """Send one CLI line (commands may be ';'-separated); return HAProxy's whole answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(socket_path)
            s.sendall(line.encode("ascii") + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except OSError as e:
        raise HAProxyError(f"HAProxy's runtime API at {socket_path}: {e}") from None
    return b"".join(chunks).decode("utf-8", "replace")


def listening(socket_path: str) -> bool:
    """Whether a HAProxy serves its runtime API there (a socket file left by a stopped
    one refuses the connection)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(socket_path)
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError:
        return True           # there, but unusable (permissions...): command() says why
    return True


def _check_quiet(answer: str, what: str) -> None:
    """`add map`, `set map` and `commit map` say nothing when they succeed."""
    if answer.strip():
        raise HAProxyError(f"HAProxy refused {what}: {answer.strip()}")


def set_pin(socket_path: str, map_path: str, account: str, name: str) -> None:
    """Route `account` to instance `name` from the next request on."""
    answer = command(socket_path, f"set map {map_path} {account} {name}")
    if "not found" in answer.lower() and "unknown map" not in answer.lower():
        answer = command(socket_path, f"add map {map_path} {account} {name}")
    _check_quiet(answer, f"the pin {account} -> {name}")


def get_pin(socket_path: str, map_path: str, account: str) -> str | None:
    """The instance HAProxy's map holds for `account` now (None: not pinned)."""
    answer = command(socket_path, f"get map {map_path} {account}")
    # e.g. 'type=str, case=sensitive, found=yes, idx=tree, key="a", value="n1", type="str"'
    if "found=yes" not in answer:
        if "found=no" in answer:
            return None
        raise HAProxyError(f"HAProxy answered get map with: {answer.strip()}")
    return answer.split('value="', 1)[1].split('"', 1)[0]


def replace_map(socket_path: str, map_path: str, pins: dict[str, str]) -> None:
    """Swap the whole map for `pins` in one step."""
    answer = command(socket_path, f"prepare map {map_path}")
    # 'New version created: 3'
    if "version created" not in answer.lower():
        raise HAProxyError(f"HAProxy refused prepare map {map_path}: {answer.strip()}")
    version = answer.strip().rsplit(":", 1)[1].strip()
    batch: list[str] = []
    size = 0
    for acc, name in sorted(pins.items()):
        cmd = f"add map @{version} {map_path} {acc} {name}"
        if size + len(cmd) > _BATCH_BYTES:
            _check_quiet(command(socket_path, ";".join(batch)), f"add map @{version}")
            batch, size = [], 0
        batch.append(cmd)
        size += len(cmd) + 1
    if batch:
        _check_quiet(command(socket_path, ";".join(batch)), f"add map @{version}")
    _check_quiet(command(socket_path, f"commit map @{version} {map_path}"), f"commit map @{version}")
