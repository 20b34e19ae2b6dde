"""Configuration: embedded defaults, then a TOML file, then CDRAGON_* environment
variables, then command-line flags -> one frozen Config.

Owns the names, types and bounds of every setting, and the rule for CDRAGON_* names: a
CDRAGON_* variable is either a setting (CDRAGON_ + the setting's name in upper case) or
listed in NOT_SETTINGS; any other is an error, like an unknown key in the file. Never
touches the network or disk beyond reading the one config file it is given.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, fields

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class Config:
    # where to serve and keep data
    listen: str = "127.0.0.1:8081"
    data_dir: str = "./cdragon-data"
    # TLS on the listener: both files or neither ("" = plain HTTP); a client CA file
    # also requires client certificates signed by it. SIGHUP re-reads the three files.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # request limits (API.md "Default limits")
    max_body_bytes: int = 1 * MIB
    max_import_bytes: int = 256 * MIB       # body of POST /admin/import (held in memory while applied)
    max_value_bytes: int = 512 * KIB
    max_header_bytes: int = 16 * KIB
    max_ops: int = 1000
    max_seq_count: int = 10_000
    max_prefix_delete: int = 100_000        # keys one request's KVDeletes may delete
    max_ttl: float = 365 * 24 * 3600.0      # longest TTL of a key, in seconds
    # locks and watches
    max_lock_dur: float = 7 * 24 * 3600.0
    default_lock_dur: float = 30.0          # LockDur / ?dur when the request has none
    max_lock_wait: float = 300.0
    max_watch_timeout: float = 300.0
    default_watch_timeout: float = 30.0     # a watch's Timeout / ?timeout when none is sent
    max_waiters_per_key: int = 10_000
    max_waiters: int = 100_000
    max_watchers_per_key: int = 10_000
    max_watchers: int = 100_000
    max_connections: int = 100_000
    # time limits (seconds)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    shutdown_timeout: float = 10.0
    # queues (API.md "Queues and scheduled tasks")
    queue_dedup_window: float = 300.0       # a DedupID is remembered this long
    max_queue_delay: float = 365 * 24 * 3600.0   # furthest Delay / At ahead
    queue_max_attempts: int = 10            # deliveries before {Queue}:dead (0: no limit)
    # retention
    idempotency_ttl: float = 24 * 3600.0
    delete_retention: float = 3600.0
    # storage: the LMDB map starts small and doubles up to max_storage_bytes
    max_storage_bytes: int = 2 * GIB
    initial_map_bytes: int = 64 * MIB
    # seconds a durable write may wait in the write-ahead log before LMDB gets it
    checkpoint_interval: float = 2.0
    # pipelined requests in flight on one connection before we stop reading it
    max_pipeline: int = 128
    # with no [[token]] configured, serve loopback clients only (Redis's protected mode)
    protected_mode: bool = True
    # logs: level, "text" or "json" lines, and one line per request when access_log is on
    log_level: str = "info"
    log_format: str = "text"
    access_log: bool = False
    # backups (cdragon.backup): snapshots into backup_dir ("" = <data_dir>/backups),
    # uploaded to backup_s3_url ("s3://bucket/prefix", "" = none) when set; every
    # backup_interval seconds (0 = only on request), keeping the newest backup_keep
    backup_dir: str = ""
    backup_interval: float = 3600.0
    backup_keep: int = 24
    backup_s3_url: str = ""
    backup_s3_endpoint: str = ""            # "" = AWS; e.g. "http://127.0.0.1:9000"
    backup_s3_region: str = ""              # "" = the AWS chain's (or us-east-1)
    # ship the write-ahead log to S3: "auto" (= on when backup_s3_url is set), "on", "off"
    backup_ship_log: str = "auto"
    backup_ship_interval: float = 10.0      # a segment holding writes is shipped this often
    backup_ship_max_bytes: int = 1 * GIB    # unshipped log kept on disk while S3 is down

    def ship_log(self) -> bool:
        """Whether the write-ahead log is shipped to S3 (backup_ship_log "auto": when
        backup_s3_url is set)."""
        return self.backup_ship_log == "on" or (self.backup_ship_log == "auto" and bool(self.backup_s3_url))

    def backups_path(self) -> str:
        import os.path
        return self.backup_dir or os.path.join(self.data_dir, "backups")

    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


_FIELDS = {f.name: f for f in fields(Config)}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
SHIP_LOG = ("auto", "on", "off")
# numbers where 0 is allowed, and what it means
ZERO_OK = {"backup_interval": "off", "queue_max_attempts": "no limit"}

ENV_PREFIX = "CDRAGON_"

# CDRAGON_* variables that are not settings, with who reads them. load() accepts these
# and refuses every other CDRAGON_* name that is not a setting's variable, so a new
# variable read anywhere in the project (a client command's CDRAGON_TOKEN, say) goes in
# here together with the code that reads it.
NOT_SETTINGS = {
    "CDRAGON_TEST_FAIL_LOG_WRITES": "test hook in cdragon/storage.py: fail the listed log writes",
    "CDRAGON_TEST_NO_FAST_HTTP": "test hook in cdragon/core/server.pyx: =1 frames every request "
                                 "with httptools (tests/test_http_framer.py compares the two)",
    "CDRAGON_URL": "the server's URL for client scripts (README's bash lock guard)",
    "CDRAGON_TOKEN": "cdragon export / import (cdragon/importer.py) and shard pin-all (cdragon/shard): "
                     "the token sent to the server",
    "CDRAGON_PLOT_REEXEC": "bench/plot.py: set when it re-executes itself in its plot venv",
}


def env_var(name: str) -> str:
    """The environment variable of setting `name`: max_ops -> CDRAGON_MAX_OPS."""
    return ENV_PREFIX + name.upper()


def default(name: str):
    """The built-in default of setting `name` (the Config dataclass is the one definition)."""
    return _FIELDS[name].default


def setting_names() -> list[str]:
    return list(_FIELDS)


def _closest(word: str, known, prefix: str = "") -> str:
    """' (did you mean X?)' for the known name nearest to a misspelt one, else ''; names
    are compared without their common `prefix` (CDRAGON_FOO is not near CDRAGON_URL)."""
    rest = {k[len(prefix):]: k for k in known}
    match = difflib.get_close_matches(word[len(prefix):], sorted(rest), n=1)
    return f" (did you mean {rest[match[0]]}?)" if match else ""


def check_environment(env) -> None:
    """Refuse CDRAGON_* variables that are neither a setting's nor in NOT_SETTINGS: a
    misspelt one would otherwise be ignored without a word."""
    known = {env_var(n) for n in _FIELDS}
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known
                     and k not in NOT_SETTINGS)
    if unknown:
        what = ", ".join(k + _closest(k, known | NOT_SETTINGS.keys(), ENV_PREFIX) for k in unknown)
        raise ConfigError(f"unknown environment variable{'s' if len(unknown) > 1 else ''} {what};"
                          " `cdragon serve --help` lists every setting's variable")


def _coerce(name: str, raw, source: str):
    kind = _FIELDS[name].type
    try:
        if kind == "str":
            if not isinstance(raw, str):
                raise TypeError
            value = raw
        elif kind == "bool":
            if isinstance(raw, str) and raw.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                value = raw.strip().lower() in ("true", "1", "yes", "on")
            elif isinstance(raw, bool):
                value = raw
            else:
                raise TypeError
        elif kind == "int":
            if isinstance(raw, bool):
                raise TypeError
            value = int(raw) if isinstance(raw, (int, str)) else None
            if value is None:
                raise TypeError
        elif kind == "bool":
            if isinstance(raw, bool):
                value = raw
            elif isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
                value = raw.lower() in ("true", "1", "yes")
            else:
                raise TypeError
        else:  # float
            if isinstance(raw, bool):
                raise TypeError
            value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} must be a {kind}, got {raw!r}") from None
    return value


def _check(cfg: Config) -> Config:
    for f in fields(Config):
        v = getattr(cfg, f.name)
        if f.name in ZERO_OK:
            if not v >= 0:
                raise ConfigError(f"{f.name} must be >= 0 (0 = {ZERO_OK[f.name]}), got {v!r}")
        elif f.type in ("int", "float") and not (v > 0):
            raise ConfigError(f"{f.name} must be > 0, got {v!r}")
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {cfg.log_level!r}")
    if cfg.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {cfg.log_format!r}")
    if cfg.backup_ship_log not in SHIP_LOG:
        raise ConfigError(f"backup_ship_log must be one of {', '.join(SHIP_LOG)}, got {cfg.backup_ship_log!r}")
    if cfg.backup_ship_log == "on" and not cfg.backup_s3_url:
        raise ConfigError("backup_ship_log = \"on\" needs backup_s3_url (the log is shipped to S3)")
    if cfg.backup_s3_url and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", cfg.backup_s3_url):
        raise ConfigError(f"backup_s3_url must be s3://BUCKET[/PREFIX], got {cfg.backup_s3_url!r}")
    if cfg.backup_s3_endpoint and not re.match(r"^https?://[^/\s]+/?$", cfg.backup_s3_endpoint):
        raise ConfigError(f"backup_s3_endpoint must be http(s)://HOST[:PORT], got {cfg.backup_s3_endpoint!r}")
    try:
        host, port = cfg.listen_host_port()
    except ValueError:
        raise ConfigError(f"listen must be HOST:PORT, got {cfg.listen!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen port out of range: {port}")
    if bool(cfg.tls_cert_file) != bool(cfg.tls_key_file):
        given, missing = (("tls_cert_file", "tls_key_file") if cfg.tls_cert_file
                          else ("tls_key_file", "tls_cert_file"))
        raise ConfigError(f"{given} is set but {missing} is not: TLS needs both (or neither)")
    if cfg.tls_client_ca_file and not cfg.tls_cert_file:
        raise ConfigError("tls_client_ca_file needs tls_cert_file and tls_key_file")
    # a default above its maximum means the maximum (a max_watch_timeout of 5 makes
    # watches without a Timeout wait 5 s)
    for default, top in (("default_lock_dur", "max_lock_dur"), ("default_watch_timeout", "max_watch_timeout")):
        if getattr(cfg, default) > getattr(cfg, top):
            cfg = dataclasses.replace(cfg, **{default: getattr(cfg, top)})
    if cfg.max_value_bytes > cfg.max_body_bytes:
        raise ConfigError("max_value_bytes must not exceed max_body_bytes")
    if cfg.initial_map_bytes > cfg.max_storage_bytes:
        cfg = dataclasses.replace(cfg, initial_map_bytes=cfg.max_storage_bytes)
    return cfg


def read_file(path: str) -> dict:
    """The config file's TOML (settings, and the [[token]] tables cdragon.tokens reads)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load(path: str | None = None, env: dict | None = None, overrides: dict | None = None) -> Config:
    """Build the Config: defaults < TOML file < CDRAGON_* env < overrides (CLI flags).
    An unknown key in the file or an unknown CDRAGON_* variable is a ConfigError."""
    values: dict = {}
    if path:
        data = read_file(path)
        for key, raw in data.items():
            if key == "token":
                continue                     # [[token]] tables: cdragon.tokens reads them
            if key not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}{_closest(key, _FIELDS)}")
            values[key] = _coerce(key, raw, path)
    env = os.environ if env is None else env
    check_environment(env)
    for key in _FIELDS:
        var = env_var(key)
        if var in env:
            values[key] = _coerce(key, env[var], var)
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _coerce(key, raw, "--" + key.replace("_", "-"))
    return _check(Config(**values))
