"""Command line: `cdragon serve | version | check-config`.

Owns argument parsing and exit codes only; serving lives in cdragon.server.

Exit codes (README.md "Exit codes", packaging/README.md). A start-up failure prints
one line on stderr, `cdragon: ...`, never a traceback. The systemd units restart
after 1 only: `RestartPreventExitStatus=2 3 4 5`, since a restart cannot fix those.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from cdragon import __version__
from cdragon.config import ConfigError, load

EXIT_OK = 0                 # clean stop (SIGTERM/SIGINT, everything committed)
EXIT_CRASH = 1              # unexpected error, with a traceback: systemd restarts it
EXIT_CONFIG = 2             # bad config file, variable or flag
EXIT_DATA_DIR_BUSY = 3      # another process serves from the same data_dir
EXIT_DATA_DIR_UNUSABLE = 4  # data_dir cannot be created, read or written, or wrong schema
EXIT_CANNOT_LISTEN = 5      # address in use, permission denied, host does not resolve


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cdragon", description="Cloud Dragon sync server")
    sub = p.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="serve HTTP (default 127.0.0.1:8081)")
    serve.add_argument("--listen", metavar="HOST:PORT")
    serve.add_argument("--data-dir", metavar="DIR")
    serve.add_argument("--config", metavar="FILE", help="TOML config file")
    sub.add_parser("version", help="print the version")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", metavar="FILE")
    check.add_argument("file", nargs="?", help="TOML config file (same as --config)")
    return p


def _version_line() -> str:
    """Version, Python, the glibc we run on and, for the single executable (PyInstaller),
    the glibc it was built on and the oldest one it needs (packaging/cdragon.spec)."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or "libc unknown"
    except (ValueError, OSError):
        libc = "libc unknown"
    line = f"cdragon {__version__} (Python {platform.python_version()}, {libc}"
    if getattr(sys, "frozen", False):
        try:
            with open(os.path.join(sys._MEIPASS, "cdragon_build.json"), encoding="utf-8") as fh:
                info = json.load(fh)
            line += (f"; single executable built on glibc {info['glibc_built_on']},"
                     f" needs glibc >= {info['glibc_needed']}")
        except (OSError, ValueError, KeyError, AttributeError):
            line += "; single executable"
    return line + ")"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "version":
        print(_version_line())
        return EXIT_OK
    if args.cmd == "check-config":
        path = args.file or args.config
        env = sorted(k for k in os.environ if k.startswith("CDRAGON_"))
        try:
            cfg = load(path)
        except ConfigError as e:
            msg = str(e)
            if path and path not in msg and not any(k in msg for k in env):
                # range checks name neither the file nor the variable
                msg = f"{path}{' with ' + ', '.join(env) if env else ''}: {msg}"
            print(f"cdragon: config error: {msg}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"config ok: {path or 'no file, built-in defaults'}"
              + (f" (with {', '.join(env)} from the environment)" if env else "")
              + f": listen={cfg.listen} data_dir={cfg.data_dir}")
        return EXIT_OK
    try:
        cfg = load(args.config, overrides={"listen": args.listen, "data_dir": args.data_dir})
    except ConfigError as e:
        print(f"cdragon: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    from cdragon.datadir import DataDirBusy, DataDirUnusable
    from cdragon.server import CannotListen, serve

    codes = {DataDirBusy: EXIT_DATA_DIR_BUSY, DataDirUnusable: EXIT_DATA_DIR_UNUSABLE,
             CannotListen: EXIT_CANNOT_LISTEN}
    try:
        return serve(cfg)
    except tuple(codes) as e:
        print(f"cdragon: {e}", file=sys.stderr)
        return codes[type(e)]
