"""systemd readiness protocol (sd_notify) without libsystemd: one datagram per state
change to the unix socket named by $NOTIFY_SOCKET.

`notify("READY=1")` once the listener accepts connections, `notify("STOPPING=1")` when
shutdown begins. Does nothing (returns False) when not started by systemd, i.e. when
$NOTIFY_SOCKET is unset, and never raises: readiness reporting must not stop serving.
Addresses starting with '@' are in the abstract namespace (a leading NUL byte).
"""
from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1", several assignments separated by newlines)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        target = b"\0" + os.fsencode(addr[1:])
    elif addr[0] == "/":
        target = os.fsencode(addr)
    else:  # e.g. systemd's vsock: addresses, only for VMs; not ours to support
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(target)
            s.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True
