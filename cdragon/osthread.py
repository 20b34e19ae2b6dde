"""The server's background threads, started under a name the operating system shows.

Python names its threads for itself only: `top -H`, `ps -L`, `perf` and /proc list
every thread of the server as `python` (or `cdragon`). A thread started here renames
itself (Linux: /proc/self/task/TID/comm, at most 15 bytes) before it runs, so an
operator can tell the log writer from the checkpoint or the log shipper when one of
them is busy. Where that file cannot be written the thread simply keeps its name.
"""
from __future__ import annotations

import threading


def name_this_thread(name: str) -> bool:
    """Give the calling thread `name` (cut to 15 bytes) in the OS; True if it took."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as fh:
            fh.write(name.encode("utf-8")[:15].decode("utf-8", "ignore"))
        return True
    except OSError:
        return False


def named_thread(target, name: str) -> threading.Thread:
    """A daemon thread (not started) that names itself `name` in the OS, then runs target."""
    def run():
        name_this_thread(name)
        target()
    return threading.Thread(target=run, name=name, daemon=True)
