"""Command line: `cdragon serve | version | check-config`.

Owns argument parsing and exit codes only; serving lives in cdragon.server.
"""
from __future__ import annotations

import argparse
import platform
import sys

from cdragon import __version__
from cdragon.config import ConfigError, load


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "version":
        print(f"cdragon {__version__} (Python {platform.python_version()}, glibc {platform.libc_ver()[1] or 'unknown'})")
        return 0
    if args.cmd == "check-config":
        path = args.file or args.config
        try:
            cfg = load(path)
        except ConfigError as e:
            print(f"cdragon: config error: {e}", file=sys.stderr)
            return 2
        print(f"config ok: listen={cfg.listen} data_dir={cfg.data_dir}")
        return 0
    try:
        cfg = load(args.config, overrides={"listen": args.listen, "data_dir": args.data_dir})
    except ConfigError as e:
        print(f"cdragon: config error: {e}", file=sys.stderr)
        return 2
    from cdragon.server import serve

    return serve(cfg)
