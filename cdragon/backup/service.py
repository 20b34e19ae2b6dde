"""The server side of backups: POST /admin/backup and GET /admin/backups, the
`backup_interval` timer, retention (`backup_keep`), and starting the log shipper.

A backup: checkpoint (LMDB then holds every acknowledged write), the snapshot child
(cdragon.backup.snapshot) writes the file into backup_dir, then, with S3 configured,
the .cdbk and then its manifest are uploaded (the manifest last: the backup exists
once it is there). Only after that are older backups deleted, and shipped log objects
no kept backup needs. One backup at a time; a request that comes during one waits for
it and takes its own.
"""
from __future__ import annotations

import asyncio
import calendar
import json
import logging
import time

from cdragon._core import ApiError
from cdragon.backup import format as fmt
from cdragon.backup.state import STATE
from cdragon.backup.targets import LocalTarget, TargetError, s3_target

log = logging.getLogger("cdragon")


def list_backups(target) -> list[dict]:
    """[{"Name", "Timeline", "Rev", "Time", "Bytes", "Key"}] of the backups whose
    manifest exists, oldest first."""
    files = dict(target.list(fmt.BACKUPS))
    out = []
    for key in files:
        if not key.endswith(".json"):
            continue
        name = key[len(fmt.BACKUPS):-len(".json")]
        parsed = fmt.parse_name(name)
        data = key[:-len(".json")] + ".cdbk"
        if parsed is None or data not in files:
            continue
        when = float(calendar.timegm(time.strptime(name[:16], "%Y%m%dT%H%M%SZ")))
        out.append({"Name": name, "Timeline": parsed[0], "Rev": parsed[1], "Time": when,
                    "Bytes": files[data], "Key": data})
    return sorted(out, key=lambda b: (b["Time"], b["Rev"], b["Name"]))


def prune(target, keep: int) -> None:
    """Keep the newest `keep` backups; delete the others (manifest first, so that no
    half-deleted backup is listed), then the shipped log no kept backup needs: a
    timeline's objects up to its oldest kept backup's Rev, or all of them."""
    backups = list_backups(target)
    old, kept = backups[:-keep], backups[-keep:]
    for b in old:
        target.delete([fmt.BACKUPS + b["Name"] + ".json"])
        target.delete([b["Key"]])
    need = {}
    for b in kept:
        need[b["Timeline"]] = min(need.get(b["Timeline"], b["Rev"]), b["Rev"])
    drop = []
    for key, _size in target.list(fmt.WAL):
        parsed = fmt.parse_wal_key(key)
        if parsed is None:
            continue
        tl, _first, last, _sha = parsed
        if tl not in need or last <= need[tl]:
            drop.append(key)
    if drop:
        target.delete(drop)


class Service:
    def __init__(self, admin):
        self.admin = admin
        self.cfg = admin.cfg
        self.lock = asyncio.Lock()
        self.local = LocalTarget(self.cfg.backups_path())
        self._s3 = None
        self.timer = None
        self.shipper = None

    def s3(self):
        if self._s3 is None and self.cfg.backup_s3_url:
            self._s3 = s3_target(self.cfg)
        return self._s3

    def start(self) -> None:
        if self.cfg.backup_interval > 0:
            self.timer = self.admin.loop.call_later(self.cfg.backup_interval, self._tick)
        if self.cfg.ship_log():
            from cdragon.backup.shipper import Shipper
            STATE.ship_enabled = True
            self.shipper = Shipper(self, self.admin.storage, self.cfg)
            self.shipper.start()

    def _tick(self) -> None:
        self.timer = self.admin.loop.call_later(self.cfg.backup_interval, self._tick)
        task = self.admin.loop.create_task(self.backup())
        self.admin.tasks.add(task)
        task.add_done_callback(self._logged)

    def _logged(self, task) -> None:
        self.admin.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            log.error("automatic backup failed: %s", getattr(e, "message", None) or e)

    async def backup(self) -> dict:
        async with self.lock:
            t0 = time.monotonic()
            try:
                out = await self._backup()
            except ApiError as e:
                STATE.failures += 1
                STATE.last_error = e.message if hasattr(e, "message") else str(e)
                raise
            except Exception as e:
                STATE.failures += 1
                STATE.last_error = " ".join(str(e).split()) or type(e).__name__
                log.exception("backup failed")
                raise ApiError(500, "internal", f"backup failed: {STATE.last_error}") from None
            STATE.last_success = time.time()
            STATE.last_error = None
            out["Seconds"] = round(time.monotonic() - t0, 3)
            log.info("backup %s written (%d bytes, Rev %d) to %s in %.1f s", out["Name"], out["Bytes"],
                     out["Rev"], out["Location"], out["Seconds"])
            return out

    async def _backup(self) -> dict:
        loop = self.admin.loop
        from cdragon.admin import ChildFailed
        from cdragon.backup.snapshot import UPLOAD_FAILED
        await self.admin.checkpoint()
        cfg = self.cfg
        args = ["_snapshot", "--data-dir", cfg.data_dir, "--dir", cfg.backups_path()]
        if cfg.backup_s3_url:
            args += ["--s3-url", cfg.backup_s3_url, "--s3-endpoint", cfg.backup_s3_endpoint,
                     "--s3-region", cfg.backup_s3_region]
        try:
            man = json.loads(await self.admin.run_child(*args))
        except ChildFailed as e:
            if e.line.startswith(UPLOAD_FAILED):
                raise ApiError(502, "backup_failed", e.line) from None
            raise
        name, location = man["Name"], man["Location"]
        s3 = None
        if cfg.backup_s3_url:
            try:
                s3 = await loop.run_in_executor(None, self.s3)
            except TargetError as e:
                raise ApiError(502, "backup_failed", f"{cfg.backup_s3_url}: {e}") from None
        tl = man["Timeline"]
        if self.shipper is not None:
            self.shipper.backed_up(tl, man["Rev"])

        def retention():
            for t in (self.local, s3):
                if t is not None:
                    try:
                        prune(t, self.cfg.backup_keep)
                    except (TargetError, OSError) as e:   # the next backup tries again
                        log.warning("deleting old backups in %s failed: %s", t.location(), e)
        await loop.run_in_executor(None, retention)
        return {"Name": name, "Bytes": man["Bytes"], "SHA256": man["SHA256"], "Location": location,
                "Rev": man["Rev"], "Seconds": 0.0}

    def listing(self) -> dict:
        target = self.local
        if self.cfg.backup_s3_url:
            try:
                target = self.s3()
                target.list(fmt.BACKUPS)
            except TargetError as e:     # S3 down: what is on local disk, and why
                log.warning("listing %s failed, listing %s instead: %s", self.cfg.backup_s3_url,
                            self.local.location(), e)
                target = self.local
        backups = [{"Name": b["Name"], "Bytes": b["Bytes"], "Time": b["Time"],
                    "Location": target.location(b["Key"])} for b in list_backups(target)]
        return {"Backups": backups, "LastSuccess": STATE.last_success or None,
                "LastError": STATE.last_error, "ShippedThrough": STATE.shipped_through}

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.shipper is not None:
            self.shipper.stop()

    def final_ship(self) -> None:
        if self.shipper is not None:
            self.shipper.final()


_SERVICE: Service | None = None


def start(admin) -> Service:
    global _SERVICE
    _SERVICE = Service(admin)
    _SERVICE.start()
    return _SERVICE


def _service(admin) -> Service:
    global _SERVICE
    if _SERVICE is None or _SERVICE.admin is not admin:
        _SERVICE = Service(admin)
    return _SERVICE


def _no_params(params: dict, what: str) -> None:
    if params:
        raise ApiError(400, "bad_request", f"{what} takes no parameters (got {', '.join(sorted(params))})")


async def admin_backup(admin, params: dict):
    _no_params(params, "POST /admin/backup")
    return 200, await _service(admin).backup()


async def admin_backups(admin, params: dict):
    _no_params(params, "GET /admin/backups")
    return 200, await admin.loop.run_in_executor(None, _service(admin).listing)
