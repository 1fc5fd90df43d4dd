"""Mutual TLS 1.3 contexts for the API server (grpclib) and its clients (grpcio or grpclib).

Both ends trust only the tjob CA, present a certificate, and refuse anything below TLS 1.3.
Every file is read up front so a missing or bad one is reported by name, not as a failed
handshake later. The server hostname is checked per connection (``server_hostname`` of
``wrap_socket``, grpcio's ``grpc.ssl_target_name_override``), so it is not part of a context.
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tjob.errors import TjobError

if typing.TYPE_CHECKING:
    import os

    import grpc


def server_context(
    ca: str | os.PathLike[str],
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    crl: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A TLS 1.3-only server context that requires a client certificate from ``ca``, not
    revoked by the CRL file ``crl`` (if given and present)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    _configure(ctx, "server", Path(ca), Path(cert), Path(key))
    if crl is not None:
        _load_crl(ctx, Path(ca), Path(crl))
    return ctx


@dataclass(frozen=True)
class ServerFiles:
    """Where a server context's files are, so it can be reloaded."""

    ca: Path
    cert: Path
    key: Path
    crl: Path | None = None


def reload_context(ctx: ssl.SSLContext, files: ServerFiles) -> frozenset[int]:
    """Load the files again into the live ``ctx``: connections accepted from now on present the
    new certificate and are checked against the new CA and CRL. Returns the revoked serials.

    Everything is checked before ``ctx`` changes, so a bad file leaves it as it was. A context
    only gains CRLs (OpenSSL cannot drop one); the newest (by lastUpdate) is the one used, and
    ``tjobs certs revoke`` makes each CRL newer than the last.
    """
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(scratch, "server", files.ca, files.cert, files.key)
    revoked = frozenset[int]()
    if files.crl is not None:
        revoked = _load_crl(scratch, files.ca, files.crl)
    _configure(ctx, "server", files.ca, files.cert, files.key)
    if files.crl is not None:
        _load_crl(ctx, files.ca, files.crl)
    return revoked


def _load_crl(ctx: ssl.SSLContext, ca: Path, crl: Path) -> frozenset[int]:
    """Check client certificates against the PEM CRL ``crl`` (signed by ``ca``), if it exists;
    the serials it revokes."""
    from tjob.api import certstore  # cryptography: the server side only

    if not crl.exists():
        return frozenset()
    revoked = certstore.read_crl(crl, ca)
    try:
        ctx.load_verify_locations(cafile=crl)
    except (ssl.SSLError, OSError) as err:
        raise TjobError(f"cannot load CRL {crl}: {err}") from err
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return revoked


def client_context(
    ca: str | os.PathLike[str], cert: str | os.PathLike[str], key: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A TLS 1.3-only client context that presents ``cert`` and trusts only ``ca``.

    It checks the server's name against the ``server_hostname`` given per connection.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    _configure(ctx, "client", Path(ca), Path(cert), Path(key))
    return ctx


def client_credentials(
    ca: str | os.PathLike[str], cert: str | os.PathLike[str], key: str | os.PathLike[str]
) -> grpc.ChannelCredentials:
    """grpcio channel credentials from the same files, checked the same way as client_context.

    grpcio has no TLS-version setting; the server's context is what refuses TLS 1.2.
    """
    import grpc  # heavy; only the CLI's client side pays for it

    # Loading through ssl (which grpc imports anyway) names a bad file; grpcio would only fail
    # the connection later.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca_pem, cert_pem, key_pem = _configure(ctx, "client", Path(ca), Path(cert), Path(key))
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def identity_from_peercert(cert: Mapping[str, object] | None) -> str | None:
    """The subject common name of an ``SSLSocket.getpeercert()`` dict, the client's identity.

    None when there is no verified certificate or its subject has no or several common names,
    so an ambiguous subject never maps to anyone.
    """
    if not cert:
        return None
    subject = cert.get("subject")
    if not isinstance(subject, tuple):
        return None
    names = [
        value
        for rdn in subject
        if isinstance(rdn, tuple)
        for attr in rdn
        if isinstance(attr, tuple) and len(attr) == 2
        for key, value in [attr]
        if key == "commonName" and isinstance(value, str)
    ]
    return names[0] if len(names) == 1 and usable_identity(names[0]) else None


def usable_identity(name: str) -> bool:
    """Whether a common name may be a client identity: non-empty, printable (no control
    characters, escapes or NUL that could forge a log line or a terminal's output), without
    leading or trailing whitespace (``admin `` would pass for ``admin`` in a listing).
    Identities are compared exactly: ``Admin`` is not ``admin``."""
    return bool(name) and name.isprintable() and name == name.strip()


def _configure(
    ctx: ssl.SSLContext, role: str, ca: Path, cert: Path, key: Path
) -> tuple[bytes, bytes, bytes]:
    """TLS 1.3 only, strict X.509, ALPN h2, trust ``ca`` alone, and present ``cert``/``key``.

    Returns the PEM bytes of the three files as loaded.
    """
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.set_alpn_protocols(["h2"])  # gRPC runs over HTTP/2 only
    ca_pem = _check_pem(ca, "CA certificate", b"CERTIFICATE")
    cert_pem = _check_pem(cert, f"{role} certificate", b"CERTIFICATE")
    key_pem = _check_pem(key, f"{role} key", b"PRIVATE KEY")
    if b"ENCRYPTED" in key_pem:
        # OpenSSL would prompt on the terminal for a passphrase; keys are protected by mode 0600.
        raise TjobError(f"{role} key {key} is encrypted; tjob needs an unencrypted key")
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as err:
        raise TjobError(f"cannot load CA certificate {ca}: {err}") from err
    except OSError as err:  # replaced or removed since it was checked
        raise TjobError(f"cannot read CA certificate {ca}: {err}") from err
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as err:
        why = "it is not the key of that certificate" if "KEY_VALUES_MISMATCH" in str(err) else err
        raise TjobError(f"cannot use {role} key {key} with certificate {cert}: {why}") from err
    except OSError as err:  # replaced or removed since it was checked
        raise TjobError(f"cannot read {role} certificate {cert} or key {key}: {err}") from err
    return ca_pem, cert_pem, key_pem


def _check_pem(path: Path, what: str, label: bytes) -> bytes:
    """The bytes of ``path`` if it is a readable PEM ``label``; TjobError naming the file if not."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TjobError(f"cannot read {what} {path}: {err.strerror or err}") from err
    if b"-----BEGIN " not in data or label + b"-----" not in data:
        raise TjobError(f"{what} {path} is not a PEM {label.decode().lower()}")
    return data
