"""Command line: `cdragon serve | version | check-config`, `cdragon --version`.

`cdragon` alone prints the help on stderr and exits 2 (a missing command is a usage
error, as argparse treats every other one: a unit or script that lost its command
fails instead of passing). Every flag's help shows its default, read from
cdragon.config.Config, and its CDRAGON_* variable.

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
import pwd
import socket
import sys
import textwrap
import tomllib

from cdragon import __version__, config, dump, shard
from cdragon.config import ConfigError, load

EXIT_OK = 0                 # clean stop (SIGTERM/SIGINT, everything committed)
EXIT_CRASH = 1              # unexpected error, with a traceback: systemd restarts it
EXIT_CONFIG = 2             # bad config file, variable or flag
EXIT_DATA_DIR_BUSY = 3      # another process serves from the same data_dir
EXIT_DATA_DIR_UNUSABLE = 4  # data_dir cannot be created, read or written, or wrong schema
EXIT_CANNOT_LISTEN = 5      # address in use, permission denied, host does not resolve


def _shown(value) -> str:
    return str(value).replace("%", "%%")    # argparse help strings are %-formatted


def _setting(name: str, text: str) -> str:
    """Help text for a flag that sets `name`: its meaning, default and variable, the
    default read from the Config dataclass (the one definition)."""
    return f"{text} (default {_shown(config.default(name))}; {config.env_var(name)})"


def _settings_epilog() -> str:
    lines = textwrap.wrap("every setting, with its default and its variable (the config file's key is "
                          "the setting's name; precedence: defaults < --config file < CDRAGON_* "
                          "variables < flags):", 79)
    names = config.setting_names()
    width = max(len(f"{n} = {config.default(n)}") for n in names)
    for n in names:
        lines.append(f"  {f'{n} = {config.default(n)}':<{width}}  {config.env_var(n)}")
    lines += textwrap.wrap("Any other CDRAGON_* variable is an error (exit 2), except these, which "
                           "are not settings: " + ", ".join(sorted(config.NOT_SETTINGS)) + ".", 79)
    return _shown("\n".join(lines))


class _VersionAction(argparse.Action):
    """--version: the line of `cdragon version`, as it is (argparse's own version action
    would wrap it at the terminal's width)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_line())
        parser.exit(EXIT_OK)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cdragon", description="Cloud Dragon: locks, versioned KV with watches, counters "
        "and sequences over HTTP+JSON. `cdragon` alone prints this help and exits 2.")
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="print the version line (as `cdragon version`) and exit")
    sub = p.add_subparsers(dest="cmd", title="commands", metavar="COMMAND")
    listen, data_dir = config.default("listen"), config.default("data_dir")
    serve = sub.add_parser(
        "serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        help=_shown(f"serve HTTP on --listen (default {listen}), data in --data-dir "
                    f"(default {data_dir})"),
        description="Serve HTTP until SIGTERM or SIGINT (exit codes: README.md).",
        epilog=_settings_epilog())
    serve.add_argument("--listen", metavar="HOST:PORT", help=_setting("listen", "address to serve on"))
    serve.add_argument("--data-dir", metavar="DIR",
                       help=_setting("data_dir", "directory of the LMDB files and the write-ahead log"))
    serve.add_argument("--config", metavar="FILE",
                       help="TOML config file, flat keys (default none: the built-in defaults)")
    sub.add_parser("version", help="print the version line and exit (as --version)",
                   description="Print the version line and exit.")
    check = sub.add_parser(
        "check-config", help="check a config file and the CDRAGON_* variables, then exit",
        description="Check the config file (if any) and the CDRAGON_* variables as `serve` "
        "would read them, that listen's host resolves (asking this host's resolver only; the "
        "address itself is not contacted) and that data_dir is usable by the user running the "
        "check (a relative one from the current directory): an existing one readable and "
        "writable, a missing one creatable (its nearest existing parent writable; nothing is "
        "created). Exit 0 if all is well, else 2 with one line per problem.")
    check.add_argument("--config", metavar="FILE",
                       help="TOML config file (default none: the built-in defaults)")
    check.add_argument("file", nargs="?", metavar="FILE", help="the same as --config FILE")
    token = sub.add_parser("token", help="make a token for the config file's [[token]] tables",
                           description="Tokens: `cdragon token new` prints a fresh token once, and the "
                           "[[token]] block (with only its SHA-256) to paste into the config file.")
    tsub = token.add_subparsers(dest="token_cmd", metavar="SUBCOMMAND", required=True)
    new = tsub.add_parser("new", help="print a new token and its [[token]] block",
                          description="Print a new token (cdt_ + 32 random bytes, base64url) on the "
                          "first line, then the [[token]] block for the config file. The token is "
                          "shown this once: the server keeps only its SHA-256.")
    new.add_argument("--name", required=True, help="the token's name, shown in logs and metrics")
    new.add_argument("--accounts", default="*",
                     help='comma-separated accounts or "prefix-*" patterns, "*" for all (default *; '
                     "ignored for metrics and admin)")
    new.add_argument("--access", required=True, choices=("read", "write", "metrics", "admin"))
    dump.add_parsers(sub)
    shard.add_parsers(sub)
    return p


def _token_new(args) -> int:
    from cdragon import tokens
    accounts = [a.strip() for a in args.accounts.split(",") if a.strip()]
    token = tokens.new_token()
    block = tokens.block(args.name, token, accounts, args.access)
    try:                           # the same rules as the server applies to the file
        tokens.parse([tomllib.loads(block)["token"][0]], "--name/--accounts/--access")
    except ConfigError as e:
        print(f"cdragon: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(token)
    print()
    print(block, end="")
    return EXIT_OK


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


def _listen_problem(cfg: config.Config) -> str | None:
    """Whether listen's host resolves, as the server will resolve it when it binds
    (cdragon.server._listen_socket picks the family the same way). Only this host's
    resolver (/etc/hosts, DNS) is asked; the address itself is never contacted."""
    host, port = cfg.listen_host_port()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"listen {cfg.listen}: host {host!r} does not resolve ({e.strerror})"
    except UnicodeError:            # e.g. an empty label, "a..b": not a host name at all
        return f"listen {cfg.listen}: {host!r} is not a valid host name"
    return None


def _whoami() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


def _data_dir_problem(cfg: config.Config) -> str | None:
    """Whether the server could use data_dir, for the user running the check (a relative
    one taken from the current directory): an existing directory must be readable and
    writable; a missing one must be creatable, i.e. its nearest existing parent a
    writable directory. Nothing is created."""
    full = os.path.abspath(cfg.data_dir)
    near = full
    while not os.path.lexists(near):
        near = os.path.dirname(near)
    if near == full:
        what, need = f"data_dir {full}", os.R_OK | os.W_OK | os.X_OK
    else:
        what, need = f"data_dir {full} cannot be created: {near}", os.W_OK | os.X_OK
    if not os.path.isdir(near):
        return f"{what} is not a directory"
    if not os.access(near, need):
        try:
            read_only = bool(os.statvfs(near).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if read_only:
            return f"{what} is on a read-only file system"
        return f"{what} is not {'readable and ' if near == full else ''}writable by {_whoami()}"
    return None


def _tls_problem(cfg) -> str | None:
    """Whether the TLS files (if set) load as the server would load them."""
    from cdragon import tls
    if not tls.enabled(cfg):
        return None
    try:
        tls.build_context(cfg)
    except tls.TLSFileError as e:
        return str(e)
    return None


def _check_config(path: str | None) -> int:
    env = sorted(k for k in os.environ if k in {config.env_var(n) for n in config.setting_names()})
    try:
        cfg = load(path)
        from cdragon import tokens
        tokens.load(path)
    except ConfigError as e:
        msg = str(e)
        if path and path not in msg and not any(k in msg for k in env):
            # range checks name neither the file nor the variable
            msg = f"{path}{' with ' + ', '.join(env) if env else ''}: {msg}"
        print(f"cdragon: config error: {msg}", file=sys.stderr)
        return EXIT_CONFIG
    problems = [m for m in (_listen_problem(cfg), _data_dir_problem(cfg), _tls_problem(cfg)) if m]
    for m in problems:
        print(f"cdragon: config error: {m}", file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    # install.sh reads data_dir from the end of this line: keep it last
    print(f"config ok: {path or 'no file, built-in defaults'}"
          + (f" (with {', '.join(env)} from the environment)" if env else "")
          + f": listen={cfg.listen} data_dir={cfg.data_dir}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd is None:            # bare `cdragon`: a command is missing, as a usage error
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    if args.cmd == "version":
        print(_version_line())
        return EXIT_OK
    if args.cmd == "check-config":
        return _check_config(args.file or args.config)
    if args.cmd == "token":
        return _token_new(args)
    if args.cmd in dump.COMMANDS:
        return dump.run(args)
    if args.cmd in shard.COMMANDS:
        return shard.run(args)
    from cdragon import tokens
    try:
        cfg = load(args.config, overrides={"listen": args.listen, "data_dir": args.data_dir})
        token_specs = tokens.load(args.config)
    except ConfigError as e:
        print(f"cdragon: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    from cdragon.datadir import DataDirBusy, DataDirUnusable
    from cdragon.server import CannotListen, serve

    codes = {DataDirBusy: EXIT_DATA_DIR_BUSY, DataDirUnusable: EXIT_DATA_DIR_UNUSABLE,
             CannotListen: EXIT_CANNOT_LISTEN}
    try:
        return serve(cfg, token_specs, args.config)
    except tuple(codes) as e:
        print(f"cdragon: {e}", file=sys.stderr)
        return codes[type(e)]
