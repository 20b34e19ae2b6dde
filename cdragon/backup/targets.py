"""Where backups and shipped log go: an S3 bucket/prefix (boto3) or a local directory,
both with the same layout (cdragon.backup.format) behind one small interface:
put_file, put_bytes, get_file, get_bytes, list, delete, location.

S3 client settings: path-style addressing and `request_checksum_calculation` /
`response_checksum_validation = "when_required"`: boto3 >= 1.36 otherwise sends its
new default checksums, which many S3-compatible stores reject (boto3 issues #4392,
#4398). Credentials come from the standard AWS chain; they are never logged and never
part of an error message (TargetError carries the store's own message only).
"""
from __future__ import annotations

import os
import shutil

from cdragon import wal


class TargetError(Exception):
    """The store failed or cannot be reached; the text is safe to show (no credentials)."""


def _describe(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


class LocalTarget:
    """A directory with the backup layout; files are written under a temp name, fsynced
    and renamed, so a reader never sees half a file."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def location(self, key: str = "") -> str:
        return os.path.join(self.root, key)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        wal.fsync_dir(os.path.dirname(path))

    def put_file(self, key: str, src: str) -> None:
        path = self._path(key)
        if os.path.abspath(src) == path:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        wal.fsync_dir(os.path.dirname(path))

    def get_file(self, key: str, dest: str) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except OSError as e:
            raise TargetError(f"cannot read {self.location(key)}: {e.strerror}") from None

    def get_bytes(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                return fh.read()
        except OSError as e:
            raise TargetError(f"cannot read {self.location(key)}: {e.strerror}") from None

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """[(key, size)] of the files whose key starts with `prefix` (a folder + '/')."""
        base = self._path(prefix)
        out = []
        if not os.path.isdir(base):
            return out
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                if f.endswith(".tmp"):
                    continue
                full = os.path.join(dirpath, f)
                key = os.path.relpath(full, self.root).replace(os.sep, "/")
                try:
                    out.append((key, os.path.getsize(full)))
                except OSError:
                    pass
        return sorted(out)

    def delete(self, keys: list[str]) -> None:
        for k in keys:
            try:
                os.unlink(self._path(k))
            except FileNotFoundError:
                pass


class S3Target:
    """s3://bucket/prefix through boto3."""

    def __init__(self, url: str, endpoint: str = "", region: str = "", retries: int = 3,
                 timeout: float = 20.0):
        import boto3
        from botocore.config import Config as BotoConfig
        rest = url[len("s3://"):]
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = url
        cfg = BotoConfig(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                         response_checksum_validation="when_required",
                         retries={"max_attempts": retries, "mode": "standard"},
                         connect_timeout=min(timeout, 5.0), read_timeout=timeout)
        kw = {"config": cfg}
        if endpoint:
            kw["endpoint_url"] = endpoint
        if region:
            kw["region_name"] = region
        elif not os.environ.get("AWS_DEFAULT_REGION") and not os.environ.get("AWS_REGION"):
            kw["region_name"] = "us-east-1"
        self.client = boto3.session.Session().client("s3", **kw)

    def location(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _call(self, fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except Exception as e:   # botocore's errors: the store's message, never the keys
            raise TargetError(_describe(e)) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(self.client.put_object, Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def put_file(self, key: str, src: str) -> None:
        self._call(self.client.upload_file, src, self.bucket, self.prefix + key)

    def get_file(self, key: str, dest: str) -> None:
        self._call(self.client.download_file, self.bucket, self.prefix + key, dest)

    def get_bytes(self, key: str) -> bytes:
        resp = self._call(self.client.get_object, Bucket=self.bucket, Key=self.prefix + key)
        return self._call(resp["Body"].read)

    def list(self, prefix: str) -> list[tuple[str, int]]:
        out = []
        token = None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
            if token:
                kw["ContinuationToken"] = token
            resp = self._call(self.client.list_objects_v2, **kw)
            for o in resp.get("Contents", []):
                out.append((o["Key"][len(self.prefix):], o["Size"]))
            if not resp.get("IsTruncated"):
                return sorted(out)
            token = resp.get("NextContinuationToken")

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            objs = [{"Key": self.prefix + k} for k in keys[i:i + 1000]]
            self._call(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": objs, "Quiet": True})


def open_target(where: str, cfg=None):
    """The target for an s3:// URL (endpoint and region from cfg) or a directory."""
    if where.startswith("s3://"):
        return S3Target(where, getattr(cfg, "backup_s3_endpoint", ""), getattr(cfg, "backup_s3_region", ""))
    return LocalTarget(where)


def s3_target(cfg, **kw):
    """The configured S3 target, or None."""
    if not cfg.backup_s3_url:
        return None
    return S3Target(cfg.backup_s3_url, cfg.backup_s3_endpoint, cfg.backup_s3_region, **kw)
