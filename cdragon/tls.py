"""TLS for the listener: builds the server's ssl.SSLContext from the tls_* settings and
swaps in a freshly built one when the files are re-read (SIGHUP).

Owns: the protocol policy (TLS 1.2 minimum, ALPN "http/1.1" only, client certificates
required and verified against tls_client_ca_file when that is set), reading the
certificate, key and CA files, and turning a bad file into one line of text
(TLSFileError). Knows nothing of sockets, signals or the event loop: cdragon.server
passes `Listener.context` to the loop's create_server / connect_accepted_socket and
calls `Listener.reload()` on SIGHUP.

How a reload reaches new connections only: the event loop keeps the one context it was
given (the "front" context). Its SNI callback runs early in every new handshake (called
whether or not the client sends a server name) and points that one connection at the
current inner context, which holds the certificate, key and CA store. A reload builds a
whole new inner context and, only if every file loaded, replaces the current one;
connections already open keep the context they were handshaken with.
"""
from __future__ import annotations

import re
import ssl

from cdragon.config import Config

ALPN = ["http/1.1"]

# OpenSSL's terse reasons, said plainly
_PLAIN = {
    "pem lib": "not a PEM certificate and unencrypted key (PEM lib)",
    "key values mismatch": "the key does not belong to the certificate (key values mismatch)",
    "no certificate or crl found": "no PEM certificate in it",
}


class TLSFileError(Exception):
    """A certificate, key or CA file is missing, unreadable or invalid; the text is the
    one line to print or log."""


def enabled(cfg: Config) -> bool:
    return bool(cfg.tls_cert_file)


def _base_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(ALPN)
    return ctx


def _why(e: Exception) -> str:
    """OpenSSL's reason ("PEM lib", "key values mismatch") or the system's ("No such file
    or directory"), on one line."""
    if isinstance(e, ssl.SSLError):
        text = e.reason or re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", e.strerror or str(e))
        text = text.replace("_", " ")
        return _PLAIN.get(text.lower(), text)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return " ".join(str(e).split())


def _no_passphrase() -> bytes:
    raise TLSFileError("the key is encrypted: give an unencrypted key file (mode 0600)")


def build_context(cfg: Config) -> ssl.SSLContext:
    """A context holding the certificate chain, key and (if set) client CAs of `cfg`.
    TLSFileError names the file at fault."""
    ctx = _base_context()
    try:
        # never a passphrase prompt on the terminal: an encrypted key is refused
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file, password=_no_passphrase)
    except (OSError, ssl.SSLError, ValueError, TLSFileError) as e:
        raise TLSFileError(f"cannot load TLS certificate {cfg.tls_cert_file} with key "
                           f"{cfg.tls_key_file}: {_why(e)}") from None
    if cfg.tls_client_ca_file:
        try:
            ctx.load_verify_locations(cafile=cfg.tls_client_ca_file)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise TLSFileError(f"cannot load TLS client CA file {cfg.tls_client_ca_file}: "
                               f"{_why(e)}") from None
        if not ctx.cert_store_stats().get("x509_ca") and not ctx.cert_store_stats().get("x509"):
            raise TLSFileError(f"TLS client CA file {cfg.tls_client_ca_file} holds no certificate")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Listener:
    """The front context the event loop holds, and the inner one new handshakes use."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.current = build_context(cfg)       # TLSFileError at start: exit 2
        front = build_context(cfg)              # the same policy, should the callback not run
        front.sni_callback = self._pick
        self.context = front

    def _pick(self, conn, server_name, initial) -> None:
        if conn.context is not self.current:
            conn.context = self.current
        return None

    def reload(self) -> None:
        """Re-read the files; new handshakes use them. TLSFileError (the old context kept)
        if one is bad."""
        self.current = build_context(self.cfg)

    def describe(self) -> str:
        return (f"TLS 1.2+ with {self.cfg.tls_cert_file}"
                + (f", client certificates required ({self.cfg.tls_client_ca_file})"
                   if self.cfg.tls_client_ca_file else ""))
