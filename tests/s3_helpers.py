"""S3 for the tests: moto's server mode (`moto_server`) as a separate process on a free
loopback port, which the cdragon server and the restore command reach over HTTP exactly
as they would reach AWS or any S3-compatible store.

moto keeps its state in memory: stopping the process loses every bucket, so a test that
restarts it (S3 outage) creates its bucket again and checks that the server notices the
missing backup and takes a new one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import free_port

MOTO = Path(sys.executable).parent / "moto_server"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
         "AWS_DEFAULT_REGION": "us-east-1"}


class Moto:
    """One moto_server process; `url` is its endpoint."""

    def __init__(self, log_dir: Path, port: int | None = None):
        self.port = port or free_port()
        self.log_dir = log_dir
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Moto":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"moto-{self.port}.log", "ab")
        self.proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **CREDS})
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.client().list_buckets()
                return self
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto_server exited at start")
                time.sleep(0.1)
        raise RuntimeError("moto_server not ready in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(s3={"addressing_style": "path"},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def new_bucket(self, name: str | None = None) -> str:
        name = name or f"b-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict:
        out = {}
        c = self.client()
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["Size"]
        return out

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    m = Moto(tmp_path_factory.mktemp("moto")).start()
    yield m
    m.stop()


def backup_env(moto: Moto, bucket: str, prefix: str = "cd", **more) -> dict:
    """CDRAGON_* and AWS_* variables for a server that backs up to moto."""
    env = {"CDRAGON_BACKUP_S3_URL": f"s3://{bucket}/{prefix}", "CDRAGON_BACKUP_S3_ENDPOINT": moto.url,
           **CREDS}
    env.update({k: str(v) for k, v in more.items()})
    return env
