"""What the full suite needs from the machine and records about it: the tools (wrk,
redis-server, redis-benchmark, etcd; installed with apt-get when missing and allowed),
their versions, the CPU, RAM, load and the data dir's file system.

Never starts a server.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from knobs import CLIENT_CPU, CONNECTIONS, DATA_ROOT, DURATION, GIB, INSTALL, PY, REPO, SCENARIOS, \
    SERVER_CPU, SYSTEMS, WARMUP, log

TOOLS = {"wrk": "wrk", "redis-server": "redis-server", "redis-benchmark": "redis-tools", "etcd": "etcd-server"}


def need_tools(names: set[str]) -> dict[str, str]:
    """Install missing Debian packages (apt-get update first only if the install fails).
    Returns {tool: problem} for what is still missing."""
    missing = {t: pkg for t, pkg in TOOLS.items() if t in names and shutil.which(t) is None}
    if missing and INSTALL:
        pkgs = sorted(set(missing.values()))
        if os.geteuid() != 0:
            log(f"missing {', '.join(missing)} and not root: run `apt-get install -y {' '.join(pkgs)}`")
        else:
            log(f"installing {' '.join(pkgs)} with apt-get")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
            try:
                if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, timeout=900).returncode != 0:
                    subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, timeout=900)
                    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, timeout=900)
            except subprocess.TimeoutExpired:
                log("apt-get timed out")
    return {t: f"`{t}` is missing (Debian package {pkg})" for t, pkg in TOOLS.items()
            if t in names and shutil.which(t) is None}


def tool_version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=20)
        out = (p.stdout + p.stderr).decode(errors="replace").strip().splitlines()
        return out[0].strip() if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_meta(run_dir: Path, fstype: str) -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pk = subprocess.run([PY, "-c", """
from importlib.metadata import version, PackageNotFoundError
out = {}
for p in ("uvloop", "httptools", "ujson", "lmdb", "cython"):
    try:
        out[p] = version(p)
    except PackageNotFoundError:
        pass
import json; print(json.dumps(out))"""], capture_output=True, timeout=30)
    try:
        packages = json.loads(pk.stdout)
    except ValueError:
        packages = {}
    versions = {
        "python": platform.python_version(),
        **packages,
        "cdragon": tool_version([PY, "-m", "cdragon", "version"]),
        "wrk": tool_version(["wrk", "-v"]).split(" [")[0],
        "redis": tool_version(["redis-server", "--version"]),
        "redis-benchmark": tool_version(["redis-benchmark", "--version"]),
        "etcd": tool_version(["etcd", "--version"]),
    }
    git = tool_version(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    try:
        raw = run_dir.relative_to(REPO)
    except ValueError:
        raw = run_dir
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": f"`{' '.join(platform.uname()[i] for i in (0, 2, 4))}`, {cpu}, {os.cpu_count()} CPUs, "
                   f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB)} GiB RAM",
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "versions": versions,
        "versions_text": "; ".join(f"{k} {v}" for k, v in versions.items()),
        "git": git,
        "fstype": fstype,
        "data_root": str(DATA_ROOT),
        "raw": str(raw),
        "duration": DURATION,
        "warmup": WARMUP,
        "connections": CONNECTIONS,
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "scenarios_filter": SCENARIOS,
        "systems_filter": SYSTEMS,
    }


def fs_type(path: Path) -> str:
    try:
        p = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)], capture_output=True, timeout=10)
        return p.stdout.decode().strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
