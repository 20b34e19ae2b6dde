"""Import of an NDJSON dump (`POST /admin/import`), and the client side of `cdragon export`
and `cdragon import`.

The import runs on the server's loop: the whole body is checked first
(core/importer.pyx parse_import: a bad line is 400 naming it, nothing applied), then
staged as ONE batch through the normal commit path (apply_import), and answered once
that batch is durable, i.e. in the write-ahead log: it is then shipped like any write
and replayed after a crash. Both steps block the loop for the time of a big dump.

The client commands read the same settings as `serve` (`--config`, CDRAGON_*) to find
the server (`listen`, TLS) and talk HTTP with http.client: no dependency.
"""
from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import urllib.parse

from cdragon.dump import NDJSON

MODES = ("merge", "replace")


async def admin_import(admin, params: dict, body: bytes):
    """POST /admin/import?mode=merge|replace -> (200, {"Accounts", "Records", "Rev"})."""
    from cdragon._core import ApiError, apply_import, parse_import
    mode = params.get("mode", "merge")
    if mode not in MODES:
        raise ApiError(400, "bad_request", f"mode must be merge or replace, got {mode!r}")
    plan = parse_import(admin.server, body)
    count = plan.records
    revs = await admin.staged(lambda on_durable: apply_import(admin.server, plan, mode == "replace", on_durable),
                              "the import")
    return 200, {"Accounts": len(revs), "Records": count, "Rev": revs}


# ---- the command line's client side ----------------------------------------------------
def client_args(p) -> None:
    p.add_argument("--url", help="the server, e.g. http://127.0.0.1:8081 (default: the configured "
                   "listen, https when TLS is configured)")
    p.add_argument("--token", help="an admin token (default: $CDRAGON_TOKEN)")
    p.add_argument("--config", metavar="FILE",
                   help="TOML config file, read as `serve` reads it (default none)")


class _Failed(Exception):
    """One line for stderr; the command exits 1 (2 for a configuration error)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _base_url(args) -> str:
    if args.url:
        return args.url
    from cdragon import config, tls
    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        raise _Failed(f"config error: {e}", 2) from None
    host, port = cfg.listen_host_port()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls.enabled(cfg) else 'http'}://{host}:{port}"


def _request(args, method: str, path: str, body: bytes | None = None):
    """(connection, response) of one request to the server."""
    url = urllib.parse.urlsplit(_base_url(args))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise _Failed(f"--url must be http://HOST:PORT or https://HOST:PORT, got {args.url!r}", 2)
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(url.hostname, url.port, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port)
    headers = {}
    token = args.token or os.environ.get("CDRAGON_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = NDJSON.decode()
    try:
        conn.request(method, url.path.rstrip("/") + path, body=body, headers=headers)
        return conn, conn.getresponse()
    except (OSError, http.client.HTTPException) as e:
        raise _Failed(f"cannot reach {url.scheme}://{url.netloc}: {e}") from None


def _error_text(resp) -> str:
    raw = resp.read()
    try:
        err = json.loads(raw)
        return f"{resp.status} {err['Code']}: {err['Message']}"
    except (ValueError, KeyError, TypeError):
        return f"{resp.status} {raw[:200]!r}"


def _run(fn, args) -> int:
    try:
        return fn(args)
    except _Failed as e:
        print(f"cdragon: {e}", file=sys.stderr)
        return e.code


def cli_export(args) -> int:
    return _run(_export, args)


def cli_import(args) -> int:
    return _run(_import, args)


def _export(args) -> int:
    path = "/admin/export" + ("?" + urllib.parse.urlencode({"acc": args.acc}) if args.acc else "")
    conn, resp = _request(args, "GET", path)
    if resp.status != 200:
        raise _Failed(f"export refused: {_error_text(resp)}")
    out = sys.stdout.buffer
    try:
        while True:
            chunk = resp.read1(256 * 1024)
            if not chunk:
                break
            out.write(chunk)
        out.flush()
    except BrokenPipeError:
        # the reader stopped (`cdragon export | head`): not our failure to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, http.client.HTTPException) as e:
        raise _Failed(f"export cut off: {e!r}") from None
    conn.close()
    return 0


def _import(args) -> int:
    try:
        if args.file == "-":
            body = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as fh:
                body = fh.read()
    except OSError as e:
        raise _Failed(f"cannot read {args.file}: {e.strerror}") from None
    conn, resp = _request(args, "POST", "/admin/import?mode=" + args.mode, body)
    if resp.status != 200:
        raise _Failed(f"import refused: {_error_text(resp)}")
    print(resp.read().decode("utf-8", "replace"))
    conn.close()
    return 0
