"""The /admin/* routes (accounts, backup, backups, export, import), on the Python side.

The Cython router parks each such request in its pipeline slot and calls
`Admin.handle` with an AdminReply (cdragon/core/admin.pyx); the work runs as a task on
the event loop and answers through the reply. Owns what the route handlers share:
waiting for a checkpoint (so that LMDB holds every acknowledged write), and running
`cdragon <subcommand>` in a child process that reads LMDB on its own (LMDB lets
several processes read one environment; a child's read transaction neither takes the
event loop's GIL nor keeps the server from growing its map), either collecting its
standard output or streaming it as the answer. The work itself lives in
cdragon.dump (accounts, export, import) and cdragon.backup (backups).
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys

import ujson

from cdragon._core import ApiError

log = logging.getLogger("cdragon")

_CHUNK = 256 * 1024        # bytes read from a streaming child at a time

# route template -> (module, function)
_ROUTES = {
    "/admin/accounts": ("cdragon.dump", "admin_accounts"),
    "/admin/export": ("cdragon.dump", "admin_export"),
    "/admin/import": ("cdragon.dump", "admin_import"),
    "/admin/backup": ("cdragon.backup", "admin_backup"),
    "/admin/backups": ("cdragon.backup", "admin_backups"),
    "/admin/freeze": ("cdragon.moving", "admin_freeze"),
    "/admin/purge": ("cdragon.moving", "admin_purge"),
}


class Admin:
    """Runs the admin routes of one Server."""

    def __init__(self, server, cfg, storage, loop, runner=None):
        self.server = server
        self.cfg = cfg
        self.storage = storage
        self.loop = loop
        self.runner = runner
        self.tasks: set[asyncio.Task] = set()

    # ---- entry from the router -------------------------------------------------------
    def handle(self, template: str, method: str, params: dict, body: bytes, reply) -> None:
        task = self.loop.create_task(self._answer(template, method, params, body, reply))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, template, method, params, body, reply) -> None:
        try:
            if body and template != "/admin/import":
                raise ApiError(400, "bad_request", f"{method} {template} takes no body")
            handler = self._handler(template)
            if template == "/admin/export":
                await handler(self, params, reply)
                return
            if template == "/admin/import":
                status, out = await handler(self, params, body)
            elif template == "/admin/freeze":
                status, out = await handler(self, method, params)
            else:
                status, out = await handler(self, params)
            reply.send(status, ujson.dumps(out, ensure_ascii=False, escape_forward_slashes=False).encode())
        except ApiError as e:
            if not reply.streaming:
                reply.send_error(e)
            else:
                reply.abort()
        except Exception:
            log.exception("admin route %s failed", template)
            if not reply.streaming:
                reply.send_error(ApiError(500, "internal", f"{template} failed: see the server log"))
            else:
                reply.abort()

    @staticmethod
    def _handler(template: str):
        """The route's handler, imported on first use: the route modules are cold, and
        some load boto3 and friends."""
        where = _ROUTES[template]
        return getattr(importlib.import_module(where[0]), where[1])

    # ---- shared by the handlers ----------------------------------------------------------
    async def checkpoint(self) -> int:
        """Return once LMDB holds every write acknowledged before the call (forcing a
        checkpoint); returns the last log record number LMDB then holds."""
        done = self.loop.create_future()

        def settled(lsn):
            if not done.done():
                done.set_result(lsn)
        self.server.when_checkpointed(settled)
        return await done

    async def staged(self, stage, what: str):
        """Run stage(on_durable), which stages writes into the open batch and returns
        (result, that batch's number); return the result once the batch is durable.
        A failed commit drops its batch's callbacks: it shows as the durable batch
        number passing this one, and is answered 500."""
        durable = self.loop.create_future()

        def on_durable():
            if not durable.done():
                durable.set_result(None)
        result, seq = stage(on_durable)
        while not durable.done():
            await asyncio.wait([durable], timeout=0.5)
            if not durable.done() and self.server.store.durable_seq >= seq:
                raise ApiError(500, "internal", f"{what} could not be logged: {self.server.storage_error}")
        return result

    def child_command(self, *args) -> list[str]:
        """argv of `cdragon <args>` in a child process, from a checkout (this Python
        with -m cdragon) or from the one-file binary (which is sys.executable)."""
        if getattr(sys, "frozen", False):
            return [sys.executable, *map(str, args)]
        return [sys.executable, "-m", "cdragon", *map(str, args)]

    def _child_env(self) -> dict:
        env = dict(os.environ)
        # a checkout's package must be the one the child imports, wherever it runs from
        if not getattr(sys, "frozen", False):
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    async def _spawn(self, args):
        return await asyncio.create_subprocess_exec(
            *self.child_command(*args), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self._child_env())

    async def run_child(self, *args) -> bytes:
        """Run `cdragon <args>`; its standard output. A non-zero exit raises
        ChildFailed with the last line it printed on standard error."""
        proc = await self._spawn(args)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ChildFailed(args[0], proc.returncode, err)
        return out

    async def stream_child(self, reply, content_type: bytes, *args) -> None:
        """Run `cdragon <args>` and send its standard output as the reply's chunked
        body, as it comes, at the pace the client reads (the child blocks on its pipe
        meanwhile). A client that goes away stops the child. A child that fails after
        the head went out cuts the connection (the body's end marker never comes)."""
        proc = await self._spawn(args)
        drained = asyncio.Event()
        drained.set()

        def on_drain():
            drained.set()
        reply.on_drain = on_drain
        try:
            while not reply.ready:
                if not reply.alive:
                    return
                await asyncio.sleep(0.005)       # earlier answers on this connection first
            first = await proc.stdout.read(_CHUNK)
            if not first:
                await proc.wait()
                err = await proc.stderr.read()
                raise ChildFailed(args[0], proc.returncode, err)
            reply.start(content_type)
            if reply.is_head:                  # the head is all: the child is stopped (finally)
                reply.end()
                return
            data = first
            while data:
                if not reply.alive:
                    return
                reply.write(data)
                if reply.write_paused:
                    drained.clear()
                    await drained.wait()
                data = await proc.stdout.read(_CHUNK)
            code = await proc.wait()
            if code != 0:
                err = await proc.stderr.read()
                log.error("%s", ChildFailed(args[0], code, err))
                reply.abort()
                return
            reply.end()
        finally:
            reply.on_drain = None
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class ChildFailed(Exception):
    """A `cdragon <subcommand>` child exited non-zero."""

    def __init__(self, what: str, code: int, stderr: bytes):
        self.code = code
        lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        self.line = lines[-1] if lines else f"exit code {code}"
        super().__init__(f"{what} failed (exit {code}): {self.line}")
