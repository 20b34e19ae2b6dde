"""The one free-port picker of the benchmark scripts (bench/suite.py's modules,
bench/locks_rss.py, and the shell scripts through bench/lib.sh's `free_port`).

Never holds the port: the caller's server binds it right after.
"""
from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick). Other benchmark helpers may run
    on this machine with fixed ports, so never assume one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    print(free_port())
