"""Backups: snapshots, continuous shipping of the write-ahead log to S3, restore.

Modules: format (the .cdbk file and the layout of a backup location), targets (S3 or
a directory), snapshot (the child process that writes a snapshot), service (the
server side: POST /admin/backup, GET /admin/backups, the backup_interval timer,
retention), shipper (the thread that uploads closed log segments), restore
(`cdragon restore`, `cdragon backups list`), commands (the command-line parsers),
state (what /metrics reads). This module stays light: boto3 is imported only by the
parts that talk to S3.
"""
from __future__ import annotations


async def admin_backup(admin, params: dict):
    from cdragon.backup import service
    return await service.admin_backup(admin, params)


async def admin_backups(admin, params: dict):
    from cdragon.backup import service
    return await service.admin_backups(admin, params)


def start_service(admin):
    """Start the server's backup timer and log shipper (what the config asks for)."""
    from cdragon.backup import service
    return service.start(admin)
