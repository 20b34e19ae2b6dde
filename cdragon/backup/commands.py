"""The command-line side of backups: `cdragon backup`, `cdragon backups list`,
`cdragon restore`, and the hidden `cdragon _snapshot` the server runs as a child.
cdragon.cli calls add_parsers() and, for these commands, run()."""
from __future__ import annotations

import sys

COMMANDS = ("backup", "backups", "restore", "_snapshot")
EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_BUSY = 0, 1, 2, 3


def add_parsers(sub) -> None:
    b = sub.add_parser("backup", help="take a backup now on the running server (POST /admin/backup)",
                       description="Ask the running server for a backup and print its answer (JSON).")
    from cdragon.importer import client_args
    client_args(b)                      # --url, --token, --config: as export and import
    bs = sub.add_parser("backups", help="list the backups and the shipped log",
                        description="`cdragon backups list [--from s3://BUCKET/PREFIX|DIR]`.")
    bsub = bs.add_subparsers(dest="backups_cmd", metavar="SUBCOMMAND", required=True)
    bl = bsub.add_parser("list", help="list backups (name, time, rev, bytes) and shipped log ranges")
    bl.add_argument("--from", dest="source", help="s3://BUCKET/PREFIX or a directory (default: "
                    "backup_s3_url, else backup_dir)")
    bl.add_argument("--config", metavar="FILE", help="TOML config file (as `serve`)")
    r = sub.add_parser("restore", help="restore a backup (+ the shipped log) into a data directory",
                       description="Restore the newest backup (or --name, or the newest written at or "
                       "before --until) and the shipped log after it (up to --until) into --data-dir. "
                       "The server must be stopped. Every checksum is checked before the directory is "
                       "touched; a failure leaves it as it was.")
    r.add_argument("--data-dir", metavar="DIR", help="the data directory to restore into (default: "
                   "data_dir of the config)")
    r.add_argument("--from", dest="source", help="s3://BUCKET/PREFIX or a directory (default: "
                   "backup_s3_url, else backup_dir)")
    r.add_argument("--name", help="the backup to restore (default: the newest)")
    r.add_argument("--until", metavar="TIME", help="stop at this time: ISO 8601 (UTC when no zone) or "
                   "epoch seconds (default: everything shipped)")
    r.add_argument("--force", action="store_true", help="replace a non-empty data directory")
    r.add_argument("--config", metavar="FILE", help="TOML config file (as `serve`)")
    s = sub.add_parser("_snapshot")     # hidden: the server's snapshot child
    s.add_argument("--data-dir", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--level", type=int, default=1, choices=(1, 2, 3))
    s.add_argument("--s3-url", default="")
    s.add_argument("--s3-endpoint", default="")
    s.add_argument("--s3-region", default="")


def _fail(msg: str, code: int = EXIT_FAIL) -> int:
    print(f"cdragon: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def _config(args, **overrides):
    from cdragon.config import load
    return load(getattr(args, "config", None), overrides=overrides)


def _backup_now(args) -> int:
    # the client side of export and import (cdragon.importer) talks to the server
    from cdragon import importer

    def post(a) -> int:
        conn, resp = importer._request(a, "POST", "/admin/backup")
        if resp.status != 200:
            raise importer._Failed(f"backup failed: {importer._error_text(resp)}")
        print(resp.read().decode())
        conn.close()
        return EXIT_OK
    return importer._run(post, args)


def run(args) -> int:
    from cdragon.config import ConfigError
    from cdragon.datadir import DataDirBusy
    if args.cmd == "_snapshot":
        from cdragon.backup import snapshot
        return snapshot.child_main(args)
    if args.cmd == "backup":
        return _backup_now(args)
    try:
        cfg = _config(args, data_dir=getattr(args, "data_dir", None))
    except ConfigError as e:
        return _fail(f"config error: {e}", EXIT_CONFIG)
    from cdragon.backup import restore
    source = args.source or cfg.backup_s3_url or cfg.backups_path()
    try:
        if args.cmd == "backups":
            restore.list_location(cfg, source)
            return EXIT_OK
        until = restore.parse_until(args.until) if args.until else None
        restore.restore(cfg, source, cfg.data_dir, args.name, until, args.force)
        return EXIT_OK
    except DataDirBusy as e:
        return _fail(e, EXIT_BUSY)
    except restore.RestoreError as e:
        return _fail(f"restore failed: {e}" if args.cmd == "restore" else e)
    except OSError as e:
        return _fail(f"{args.cmd} failed: {e}")
