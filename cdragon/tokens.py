"""Tokens: the `[[token]]` tables of the config file (each a name, the SHA-256 of the
token, the accounts it covers and its access) and `cdragon token new`, which makes a
fresh token and prints it once with the block to paste. The server keeps only the
hashes; no token is ever written anywhere in clear by the server.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from cdragon.config import ConfigError, read_file

ACCESS = ("read", "write", "metrics", "admin")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9._-]{0,64}\*?")


@dataclass(frozen=True)
class TokenSpec:
    name: str
    sha256: str             # hex, lower case
    accounts: tuple         # "*", "prefix-*" or exact account names
    access: str             # one of ACCESS


def parse(tables, source: str) -> list[TokenSpec]:
    """The [[token]] tables (a list of dicts) as TokenSpecs; ConfigError naming the
    first thing wrong."""
    if not isinstance(tables, list):
        raise ConfigError(f"{source}: token must be an array of tables ([[token]])")
    out, names, hashes = [], set(), set()
    for i, t in enumerate(tables, 1):
        where = f"{source}: token #{i}"
        if not isinstance(t, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(t) - {"name", "sha256", "accounts", "access"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        name, digest, accounts, access = t.get("name"), t.get("sha256"), t.get("accounts"), t.get("access")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ConfigError(f"{where}: name must be a string of 1..64 characters")
        if name in names:
            raise ConfigError(f"{where}: name {name!r} is used twice")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
            raise ConfigError(f"{where} ({name}): sha256 must be 64 hex digits (the token's SHA-256)")
        if digest.lower() in hashes:
            raise ConfigError(f"{where} ({name}): the same sha256 twice")
        if access not in ACCESS:
            raise ConfigError(f"{where} ({name}): access must be one of {', '.join(ACCESS)}")
        if accounts is None and access in ("metrics", "admin"):
            accounts = []                  # ignored for these
        if accounts is None or accounts == [] and access in ("read", "write"):
            raise ConfigError(f"{where} ({name}): a {access} token needs accounts")
        if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
            raise ConfigError(f"{where} ({name}): accounts must be a list of account names or patterns")
        for a in accounts:
            if a != "*" and not _ACCOUNT_PATTERN.fullmatch(a) or a == "":
                raise ConfigError(f"{where} ({name}): bad account pattern {a!r}")
        if not accounts and access in ("read", "write"):
            raise ConfigError(f"{where} ({name}): a {access} token needs accounts")
        names.add(name)
        hashes.add(digest.lower())
        out.append(TokenSpec(name, digest.lower(), tuple(accounts), access))
    return out


def load(path: str | None) -> list[TokenSpec]:
    """The tokens of the config file at `path` (none without a file)."""
    if not path:
        return []
    return parse(read_file(path).get("token", []), path)


def new_token() -> str:
    """`cdt_` and 32 random bytes, base64url without padding."""
    return "cdt_" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def block(name: str, token: str, accounts: list[str], access: str) -> str:
    """The [[token]] table to paste into the config file for `token`."""
    import hashlib
    lines = ["[[token]]", f'name = "{name}"', f'sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"']
    if access in ("read", "write"):
        lines.append("accounts = [" + ", ".join(f'"{a}"' for a in accounts) + "]")
    lines.append(f'access = "{access}"')
    return "\n".join(lines) + "\n"
