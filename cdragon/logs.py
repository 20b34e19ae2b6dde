"""Logging set-up: the `log_level`, `log_format` and `access_log` settings.

Owns the handler and formatter of the "cdragon" loggers (configure() is called once
at start by cdragon.server). Text lines carry a timestamp, except under systemd
(JOURNAL_STREAM set), where the journal stamps each line itself. JSON lines are one
object a line: time, level, logger, message, and the fields a record carries (the
access log's client, method, route, status, bytes, duration, token). The access log
itself is written by the request path (core/stats.pyx, logger "cdragon.access") only
when access_log is true; its lines name the route template, never the URL, a key, a
value or a token.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time



class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + ".%03dZ" % int(record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out.setdefault(k, v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def under_journal(env=None) -> bool:
    """Whether stderr goes to the systemd journal (which timestamps lines itself)."""
    return bool((os.environ if env is None else env).get("JOURNAL_STREAM"))


def configure(cfg, stream=None, env=None) -> logging.Handler:
    """Route every "cdragon" logger (and the root's) to `stream` (stderr) in the
    configured format and level. Returns the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if cfg.log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif under_journal(env):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(cfg.log_level.upper())
    # the access log is on or off by access_log alone (the request path checks that
    # flag): it is not hidden by a log_level above info
    logging.getLogger("cdragon.access").setLevel(logging.INFO)
    return handler
