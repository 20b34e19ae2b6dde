"""What the server process knows about its backups and its log shipping, read by
/metrics (cdragon.metrics) and GET /admin/backups: one module-level BackupState,
written by the backup service (on the loop) and the shipper thread (plain attribute
stores; a scrape may see one field updated before another)."""
from __future__ import annotations


class BackupState:
    def __init__(self):
        self.last_success = 0.0        # wall-clock time of the last backup that succeeded
        self.last_error = None         # the last backup failure's message, or None
        self.failures = 0              # backups that failed
        self.shipped_through = 0       # the last log record shipped (this timeline)
        self.unshipped_bytes = 0       # log on disk not yet shipped
        self.ship_failures = 0         # upload attempts of the log that failed
        self.ship_enabled = False


STATE = BackupState()
