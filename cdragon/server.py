"""`cdragon serve`: wires the config, the LMDB storage, the Cython server and the uvloop
event loop together; owns the listening socket, signals and the shutdown sequence.

Shutdown (SIGTERM/SIGINT): stop listening but accept what is already in the backlog,
answer every request (served, or 503 shutting_down), commit the last batch, exit 0
within `shutdown_timeout` seconds.

Start-up: load the TLS files if set (cdragon.tls; a bad one is a config error, exit
2), lock the data directory (cdragon.datadir), open the storage, listen. A failure of
one of these raises DataDirBusy, DataDirUnusable or CannotListen, whose text is the one
line the command prints; cdragon.cli turns them into exit codes.

Reload (SIGHUP, `systemctl reload cdragon`): Runner.reload() runs its reload steps
(Runner.reload_steps) one by one; a step that fails logs one line and leaves its old
settings in force, and no connection is dropped.
"""
from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import resource
import signal
import socket
import sys
import time

import lmdb
import uvloop

from cdragon import __version__
from cdragon.admin import Admin
from cdragon._core import Server
from cdragon import backup, datadir, logs, moving, sd_notify, tls
from cdragon.config import Config
from cdragon.tokens import load as load_tokens
from cdragon.datadir import DataDirUnusable
from cdragon.storage import Storage, StorageError

log = logging.getLogger("cdragon")


class CannotListen(Exception):
    """The listening socket cannot be set up (address in use, no permission, unknown host)."""


def _raise_fd_limit(want: int) -> None:
    """Lift the soft open-files limit toward `want` (as far as the hard limit allows):
    every connection is a file descriptor, and the usual soft default is 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-files limit to %d: %s", target, e)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning("open-files limit is %d: fewer than max_connections (%d) clients can connect "
                    "(raise it, e.g. LimitNOFILE= in the systemd unit)", soft, want - 64)


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(4096)
    except OSError as e:
        sock.close()
        where = f"{host}:{port}" if family == socket.AF_INET else f"[{host}]:{port}"
        if isinstance(e, socket.gaierror):
            why = f"host {host!r} does not resolve ({e.strerror})"
        elif e.errno == errno.EADDRINUSE:
            why = "the address is already in use (another server listens there)"
        elif e.errno in (errno.EACCES, errno.EPERM) and port < 1024:
            why = f"{e.strerror}: ports below 1024 need CAP_NET_BIND_SERVICE"
        else:
            why = e.strerror or str(e)
        raise CannotListen(f"cannot listen on {where}: {why}") from None
    sock.setblocking(False)
    return sock


class Runner:
    """One serving process: start, run until a signal, drain, stop."""

    def __init__(self, cfg: Config, tls_listener: tls.Listener | None = None, tokens: list | None = None,
                 config_path: str | None = None):
        self.cfg = cfg
        self.tls = tls_listener
        # what SIGHUP re-reads, in order: (what, step); a step raises to keep its old
        # settings, and its exception's text is the one line logged
        self.reload_steps: list[tuple[str, object]] = []
        if tls_listener is not None:
            self.reload_steps.append(("TLS files", tls_listener.reload))
        try:
            self.storage = Storage(cfg.data_dir, cfg.initial_map_bytes, cfg.max_storage_bytes,
                                   ship_log=cfg.ship_log())
        except (StorageError, lmdb.Error, OSError) as e:   # e.g. schema mismatch
            raise DataDirUnusable(datadir.describe(cfg.data_dir, e)) from None
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = Server(self.loop, self.storage, cfg, __version__)
        self.server.admin = Admin(self.server, cfg, self.storage, self.loop, self)
        moving.load(self.server, cfg.data_dir)
        self._set_tokens(tokens or [])
        if config_path:
            self.reload_steps.append(("tokens", lambda: self._set_tokens(load_tokens(config_path))))
        self.open_to_others = not tokens and cfg.protected_mode and \
            cfg.listen_host_port()[0] not in ("127.0.0.1", "::1", "localhost")
        self.listener = None
        self.backlog_sock = None
        self.stopping = False

    def run(self) -> int:
        host, port = self.cfg.listen_host_port()
        try:
            sock = _listen_socket(host, port)
        except CannotListen:
            self.storage.close()
            self.loop.close()
            raise
        _raise_fd_limit(self.cfg.max_connections + 64)
        # keep our own handle on the listening socket: at shutdown the loop's server is
        # closed, and this one still drains connections already in the backlog
        self.backlog_sock = sock.dup()
        self.server.start()
        self.backups = backup.start_service(self.server.admin)   # timer and log shipper
        # what start-up loaded (e.g. a million held locks) lives for the whole process:
        # keep it out of the cycle collector's full passes
        gc.freeze()
        # Everything from here runs inside one run_forever: uvloop delivers signals only
        # while the loop runs, so the handlers go in before the first request is served.
        self.loop.call_soon(self._start_serving, sock)
        try:
            self.loop.run_forever()
        finally:
            commits = self.server.commits
            log.info("stopped: %d writes in %d commits (%.1f per commit on average)",
                     self.server.committed_requests, commits,
                     self.server.committed_requests / commits if commits else 0.0)
            self.server.close()
            self.backups.stop()
            self.storage.close()
            self.backups.final_ship()     # what the last interval logged, if S3 answers
            self.loop.close()
        return 0

    def _start_serving(self, sock: socket.socket) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.begin_shutdown)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.loop.create_task(self._listen(sock))

    async def _listen(self, sock: socket.socket) -> None:
        self.listener = await self.loop.create_server(self.server.protocol, sock=sock, backlog=4096,
                                                      **self._ssl_args())
        if self.stopping:   # a signal came while the server was being set up
            self.listener.close()
            return
        log.info("cdragon %s serving on %s%s, data in %s", __version__, self.cfg.listen,
                 f" ({self.tls.describe()})" if self.tls else "", self.cfg.data_dir)
        if self.open_to_others:
            log.warning("listening on %s with no token configured: protected mode serves only "
                        "clients on this machine (add a [[token]], see `cdragon token new --help`)",
                        self.cfg.listen)
        sd_notify.notify(f"READY=1\nSTATUS=serving on {self.cfg.listen}")   # systemd Type=notify

    def _ssl_args(self) -> dict:
        """create_server / connect_accepted_socket arguments: none for plain HTTP. A TLS
        handshake must finish within header_timeout (the server's own deadlines start
        once it has)."""
        if self.tls is None:
            return {}
        return {"ssl": self.tls.context, "ssl_handshake_timeout": self.cfg.header_timeout}

    def _set_tokens(self, tokens: list) -> None:
        self.server.set_auth([(t.name, t.sha256, list(t.accounts), t.access) for t in tokens],
                             self.cfg.protected_mode)

    def reload(self) -> None:
        """SIGHUP: run every reload step; one that fails keeps its old settings and logs
        why, the others still run. Open connections are left alone."""
        if self.stopping:
            return
        done = []
        for what, step in self.reload_steps:
            try:
                step()
            except Exception as e:      # a bad file, whatever the step: never the process
                why = " ".join(str(e).split()) or type(e).__name__
                log.error("reload: %s not reloaded, the old ones stay in force: %s", what, why)
            else:
                done.append(what)
        if done:
            log.info("reload: re-read %s", ", ".join(done))

    def begin_shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        sd_notify.notify("STOPPING=1")
        log.info("shutting down")
        if self.listener is not None:
            self.listener.close()
        self._drain_backlog()
        self.server.begin_shutdown()
        self.deadline = time.monotonic() + self.cfg.shutdown_timeout - 0.5
        self.loop.call_soon(self._wait_drained)

    def _drain_backlog(self) -> None:
        s = self.backlog_sock
        s.setblocking(False)
        while True:
            try:
                conn, _ = s.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            conn.setblocking(False)
            self.loop.create_task(self.loop.connect_accepted_socket(self.server.protocol, conn,
                                                                    **self._ssl_args()))
        s.close()

    def _wait_drained(self) -> None:
        self.server.close_idle(0.1)
        if self.server.drained() or (time.monotonic() > self.deadline and self.server.committed_everything()):
            self.loop.stop()
            return
        if time.monotonic() > self.deadline + 0.4:
            log.warning("shutdown timeout: stopping with work still pending")
            self.loop.stop()
            return
        self.loop.call_later(0.02, self._wait_drained)


def serve(cfg: Config, tokens: list | None = None, config_path: str | None = None) -> int:
    """Serve until a signal; 0 after a clean stop, 2 (printed one line) if a TLS file is
    bad. Other start-up failures raise DataDirBusy,
    DataDirUnusable or CannotListen; anything else is a crash (a traceback)."""
    logs.configure(cfg)
    listener = None
    if tls.enabled(cfg):
        try:
            listener = tls.Listener(cfg)
        except tls.TLSFileError as e:
            from cdragon.cli import EXIT_CONFIG     # a bad file is a configuration error
            print(f"cdragon: config error: {e}", file=sys.stderr)
            return EXIT_CONFIG
    owner = datadir.lock(cfg.data_dir)   # before LMDB opens, held until the process ends
    try:
        return Runner(cfg, listener, tokens, config_path).run()
    finally:
        os.close(owner)
