"""The /metrics page: Prometheus text rendered at scrape time.

Owns the metric families (names, help texts, labels) and their rendering. It counts
nothing itself: the request path counts in C (cdragon/core/stats.pyx, read through
`stats_snapshot`), the storage threads time log writes and checkpoints
(cdragon.storage.Timings), and the gauges are read from the Server when scraped. The
route label is a route's template (`/db/{acc}/kv/{key}`) or "other" for a request that
matched no route, so no account name or key ever becomes a label. Runs on the event
loop thread, once per scrape; prometheus_client's ProcessCollector adds `process_*`.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest

from cdragon import __version__, wal
from cdragon._core import stats_snapshot


def _buckets(bounds, counts) -> list:
    """[(le, cumulative count)] from per-bucket counts (the last one +Inf)."""
    out, total = [], 0
    for le, n in zip(list(bounds) + [float("inf")], counts):
        total += n
        out.append(("+Inf" if le == float("inf") else repr(float(le)), total))
    return out


def _histogram(name: str, doc: str, bounds, counts, total: float, labels=None) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=list(labels or {}))
    h.add_metric(list((labels or {}).values()), _buckets(bounds, counts), total)
    return h


def _log_bytes(path: str) -> int:
    n = 0
    for p in wal.segments(path) + [os.path.join(path, wal.SPARE_NAME)]:
        try:
            n += os.stat(p).st_size
        except OSError:
            pass      # removed by a checkpoint meanwhile
    return n


def _backup_families():
    from cdragon.backup.state import STATE     # written by cdragon.backup's service and shipper
    yield GaugeMetricFamily("cdragon_backup_last_success_timestamp_seconds",
                            "Wall-clock time of the last backup that succeeded (0: none yet).",
                            value=STATE.last_success)
    yield CounterMetricFamily("cdragon_backup_failures", "Backups that failed.", value=STATE.failures)
    if STATE.ship_enabled:
        yield GaugeMetricFamily("cdragon_backup_shipped_through_record",
                                "The last write-ahead log record shipped to S3.", value=STATE.shipped_through)
        yield GaugeMetricFamily("cdragon_backup_unshipped_bytes",
                                "Write-ahead log on disk not yet shipped to S3.", value=STATE.unshipped_bytes)
        yield CounterMetricFamily("cdragon_backup_ship_failures",
                                  "Attempts to ship the write-ahead log that failed.", value=STATE.ship_failures)


class CdragonCollector:
    """Every cdragon_* family, read from one Server (and its Storage) at collect()."""

    def __init__(self, server, storage=None):
        self.server = server
        self.storage = storage

    def collect(self):
        s = stats_snapshot(self.server)
        req = CounterMetricFamily("cdragon_requests", "Requests answered, by route template and status code.",
                                  labels=["route", "code"])
        for route, code, n in s["requests"]:
            req.add_metric([route, str(code)], n)
        yield req
        lat = HistogramMetricFamily("cdragon_request_duration_seconds",
                                    "Time from routing a request to its handler's return (waits for "
                                    "commits, locks, watches excluded).", labels=["route"])
        for route, counts, total in s["latency"]:
            lat.add_metric([route], _buckets(s["latency_bounds"], counts), total)
        yield lat
        yield CounterMetricFamily("cdragon_commits", "Group commits made durable.", value=s["commits"])
        yield _histogram("cdragon_commit_batch_ops", "Write requests per group commit.",
                         s["batch_bounds"], s["batch"], s["batch_sum"])
        st = self.storage
        if st is not None:
            f, c = st.fsync_times, st.checkpoint_times
            yield _histogram("cdragon_fsync_duration_seconds",
                             "Write-ahead log appends: the record's write and its fdatasync.",
                             f.bounds, list(f.counts), f.sum)
            yield _histogram("cdragon_checkpoint_duration_seconds",
                             "Checkpoints: logged writes put into LMDB.", c.bounds, list(c.counts), c.sum)
        yield GaugeMetricFamily("cdragon_connections", "Open client connections.", value=s["connections"])
        yield GaugeMetricFamily("cdragon_locks_held", "Locks held now.", value=s["locks_held"])
        yield GaugeMetricFamily("cdragon_lock_waiters", "Requests waiting for a lock.", value=s["lock_waiters"])
        yield GaugeMetricFamily("cdragon_watchers", "Watches waiting for a change.", value=s["watchers"])
        qc = self.server.queues.counts()
        qm = GaugeMetricFamily("cdragon_queue_messages", "Queue messages, by state (ready includes "
                               "those held behind their group).", labels=["state"])
        for state in ("ready", "delayed", "inflight"):
            qm.add_metric([state], qc[state])
        yield qm
        yield GaugeMetricFamily("cdragon_queue_receivers", "Receivers waiting on POST /queue/{acc}.",
                                value=qc["waiters"])
        sb = GaugeMetricFamily("cdragon_storage_bytes", "Bytes used: LMDB pages in use (data) and "
                               "write-ahead log files on disk (log: the segments, the one being written counted whole, "
                               "with the room ahead of its records, and the spare kept for reuse).", labels=["part"])
        sb.add_metric(["data"], s["data_bytes"])
        if st is not None:
            sb.add_metric(["log"], _log_bytes(st.path))
        yield sb
        yield GaugeMetricFamily("cdragon_storage_limit_bytes", "max_storage_bytes.", value=s["limit_bytes"])
        yield from _backup_families()
        af = CounterMetricFamily("cdragon_auth_failures", "Requests refused for their token, by reason.",
                                 labels=["reason"])
        for reason, n in sorted(s["auth_failures"].items()):
            af.add_metric([reason], n)
        yield af
        bi = GaugeMetricFamily("cdragon_build_info", "The running version (always 1).", labels=["version"])
        bi.add_metric([__version__], 1)
        yield bi


def renderer(server, storage=None):
    """A () -> bytes callable rendering the whole page for `server` (the Server's
    storage when `storage` is None)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CdragonCollector(server, storage if storage is not None else server.storage))
    registry.register(ProcessCollector(registry=None))
    return lambda: generate_latest(registry)
