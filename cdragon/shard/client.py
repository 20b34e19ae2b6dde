"""Requests from the shard commands to one instance's admin routes (plain HTTP on the
instances' private addresses, with an admin token), by http.client: no dependency."""
from __future__ import annotations

import http.client
import json


class InstanceError(Exception):
    """An instance could not be reached, or answered something unexpected."""


def call(inst, method: str, path: str, token: str | None, timeout: float,
         body: bytes | None = None) -> tuple[int, bytes]:
    """(status, body) of one request to the instance."""
    conn = http.client.HTTPConnection(inst.host, inst.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise InstanceError(f"instance {inst.name} at {inst.address}: {e}") from None
    finally:
        conn.close()


def describe(status: int, raw: bytes) -> str:
    """`403 forbidden: ...` from an error answer (or its first bytes)."""
    try:
        body = json.loads(raw)
        return f"{status} {body['Code']}: {body['Message']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} {raw[:200]!r}"


def accounts(inst, token: str | None, timeout: float) -> list[str]:
    """The accounts an instance holds (GET /admin/accounts, asked directly)."""
    status, raw = call(inst, "GET", "/admin/accounts", token, timeout)
    if status != 200:
        raise InstanceError(f"instance {inst.name} at {inst.address}: GET /admin/accounts answered "
                            f"{describe(status, raw)}")
    try:
        return [a["Account"] for a in json.loads(raw)["Accounts"]]
    except (ValueError, TypeError, KeyError):
        raise InstanceError(f"instance {inst.name}: unexpected /admin/accounts answer {raw[:200]!r}") from None
