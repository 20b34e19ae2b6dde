"""Shared fixtures: the REAL cdragon server as a subprocess.

- `server`: one server for the whole session (cheap tests share it; each test uses
  its own account via the `acc` fixture, so tests never see each other's data).
- `server_factory(env=..., config=...)`: a fresh server with its own data dir and
  settings (CDRAGON_* env overrides), killed at the end of the test.
- `limits_server` / `timeouts_server`: shared servers with small limits / timeouts.
- `client`: a keep-alive http.client-based Client for the shared server.
"""
from __future__ import annotations

import itertools

import pytest

from helpers import Server, unique_account

_counter = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("shared-server")
    srv = Server(base / "data", base / "logs")
    srv.start()
    yield srv
    srv.kill()


# Small limits, shared by the tests of request limits (body, value, op count).
LIMITS_ENV = {
    "CDRAGON_MAX_OPS": 10,
    "CDRAGON_MAX_VALUE_BYTES": 1000,
    "CDRAGON_MAX_BODY_BYTES": 4096,
    "CDRAGON_MAX_HEADER_BYTES": 2048,
}

# Short timeouts, shared by the slow-client tests.
TIMEOUTS_ENV = {
    "CDRAGON_HEADER_TIMEOUT": 1,
    "CDRAGON_BODY_TIMEOUT": 1,
    "CDRAGON_IDLE_TIMEOUT": 2,
}


@pytest.fixture(scope="session")
def limits_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("limits-server")
    srv = Server(base / "data", base / "logs", env=LIMITS_ENV)
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture(scope="session")
def timeouts_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("timeouts-server")
    srv = Server(base / "data", base / "logs", env=TIMEOUTS_ENV)
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def server_factory(tmp_path):
    """Start dedicated servers: server_factory(env={"CDRAGON_MAX_OPS": 10}).
    `data_dir=` reuses a directory; each server gets a fresh one by default."""
    started: list[Server] = []

    def make(env: dict | None = None, config: str | None = None, data_dir=None,
             extra_args: list[str] | None = None, start: bool = True) -> Server:
        n = len(started)
        d = data_dir if data_dir is not None else tmp_path / f"data{n}"
        srv = Server(d, tmp_path / f"logs{n}", env=env, config=config, extra_args=extra_args)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in started:
        srv.kill()


@pytest.fixture
def acc(request) -> str:
    """An account name unique to this test."""
    return unique_account(f"{next(_counter)}-{request.node.name}")


@pytest.fixture
def client(server):
    c = server.client()
    yield c
    c.close()
