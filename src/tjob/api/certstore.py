"""Certificates in operation: the index of issued certificates, revocation (a CRL next to the
CA), and expiry warnings.

``tjobs certs`` records every certificate it writes in ``issued.json`` in the certificates
directory (serial, common name, file stem, kind, expiry); ``tjobs certs list`` reads it (plus
any ``*.crt`` in the directory it does not know, such as files made before the index existed).
``tjobs certs revoke NAME|SERIAL`` adds a client's certificates to ``ca.crl``, a PEM CRL signed
by the CA, which ``tjobs`` checks every client certificate against (``--crl``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tjob.errors import TjobError

INDEX = "issued.json"
CRL_SUFFIX = ".crl"
WARN_DAYS = 30  # warn when a certificate expires within this many days...
# ...or, for short-lived certificates (tjobs certs issues 30-day leaves), within this share of
# its whole validity: a freshly renewed 30-day certificate is not worth a warning.
WARN_SHARE = 1 / 3


@dataclass(frozen=True)
class Issued:
    """One issued certificate, as ``tjobs certs list`` shows it."""

    serial: str  # hex, lower case
    name: str  # common name (the client identity)
    stem: str  # file stem in the certificates directory
    kind: str  # ca, server or client
    not_after: str  # RFC 3339
    revoked: bool = False


def crl_path(ca: str | os.PathLike[str]) -> Path:
    """Where the CRL of the CA file ``ca`` lives: next to it (``ca.crt`` -> ``ca.crl``)."""
    return Path(ca).with_suffix(CRL_SUFFIX)


def record_issued(root: Path, stem: str, cert: x509.Certificate) -> None:
    """Add ``cert`` (written as ``stem``.crt) to the index of ``root``."""
    entries = [e for e in _read_index(root) if e.stem != stem or e.serial != _hex(cert)]
    entries.append(_entry(stem, cert))
    data = json.dumps([asdict(e) for e in entries], indent=1).encode() + b"\n"
    from tjob.api import pki

    pki._write(root / INDEX, data, 0o644)


def issued(root: str | os.PathLike[str]) -> list[Issued]:
    """Every certificate the index knows, plus ``*.crt`` files it does not, with revocation."""
    root = Path(root)
    entries = {e.serial: e for e in _read_index(root)}
    for crt in sorted(root.glob("*.crt")):
        try:
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
        except (OSError, ValueError):
            continue
        entries.setdefault(_hex(cert), _entry(crt.stem, cert))
    crl = crl_path(root / "ca.crt")
    revoked = read_crl(crl, root / "ca.crt") if crl.exists() else frozenset()
    out = [
        Issued(**{**asdict(e), "revoked": int(e.serial, 16) in revoked}) for e in entries.values()
    ]
    return sorted(out, key=lambda e: (e.kind != "ca", e.kind != "server", e.name, e.not_after))


def revoke(root: str | os.PathLike[str], what: str) -> list[Issued]:
    """Revoke the client certificates named ``what`` (a common name, or a serial in hex) in
    the CRL next to the CA of ``root``; returns those newly revoked."""
    from tjob.api import pki

    root = Path(root)
    clients = [e for e in issued(root) if e.kind == "client"]
    chosen = [e for e in clients if e.name == what]
    if not chosen:
        serial = what.lower().removeprefix("0x").replace(":", "")
        chosen = [e for e in clients if e.serial == serial]
    if not chosen:
        known = [e for e in issued(root) if what in (e.name, e.serial)]
        if known:
            raise TjobError(f"{what} is a {known[0].kind} certificate; only clients are revoked")
        raise TjobError(f"no client certificate named {what!r} or with that serial in {root}")
    ca = pki.load(root, pki.CA_STEM)
    crl = crl_path(pki._crt(root, pki.CA_STEM))
    old = _load(crl) if crl.exists() else None
    now = datetime.now(UTC).replace(microsecond=0)
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
    known_serials = set()
    number = 1
    if old is not None:
        for entry in old:
            builder = builder.add_revoked_certificate(entry)
            known_serials.add(entry.serial_number)
        # OpenSSL keeps every CRL loaded and uses the newest: each must be strictly newer.
        now = max(now, old.last_update_utc + timedelta(seconds=1))
        number = _crl_number(old) + 1
    fresh = [e for e in chosen if int(e.serial, 16) not in known_serials]
    if not fresh:
        return []
    for e in fresh:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(e.serial, 16))
            .revocation_date(now)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    builder = (
        builder.last_update(now)
        .next_update(max(ca.cert.not_valid_after_utc, now + timedelta(days=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(pki._authority_key_id(ca), critical=False)
    )
    signed = builder.sign(ca.key, hashes.SHA256())
    pki._write(crl, signed.public_bytes(serialization.Encoding.PEM), 0o644)
    return fresh


def read_crl(crl: Path, ca: Path) -> frozenset[int]:
    """The serials the PEM CRL ``crl`` revokes; TjobError unless the CA file ``ca`` signed it."""
    loaded = _load(crl)
    try:
        ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    except (OSError, ValueError) as err:
        raise TjobError(f"cannot read CA certificate {ca}: {err}") from err
    if loaded.issuer != ca_cert.subject or not loaded.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
        raise TjobError(f"CRL {crl} is not signed by the CA in {ca}")
    return frozenset(e.serial_number for e in loaded)


def expiry_warnings(files: dict[str, Path], now: datetime | None = None) -> list[str]:
    """A sentence for each certificate file (by what it is) that expires soon (see WARN_DAYS)."""
    now = now or datetime.now(UTC)
    out = []
    for what, path in files.items():
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue  # loading it for real reports that
        end, start = cert.not_valid_after_utc, cert.not_valid_before_utc
        left = end - now
        if left < timedelta(days=WARN_DAYS) and left < (end - start) * WARN_SHARE:
            when = "expired" if left.total_seconds() <= 0 else "expires"
            out.append(
                f"the {what} {path} {when} on {end:%Y-%m-%d %H:%M} UTC; renew it "
                "(tjobs certs) and reload tjobs (SIGHUP)"
            )
    return out


def _load(crl: Path) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(crl.read_bytes())
    except OSError as err:
        raise TjobError(f"cannot read CRL {crl}: {err.strerror or err}") from err
    except ValueError as err:
        raise TjobError(f"CRL {crl} is not a PEM CRL: {err}") from err


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _read_index(root: Path) -> list[Issued]:
    try:
        raw = json.loads((root / INDEX).read_text())
        return [Issued(**{**e, "revoked": False}) for e in raw]
    except (OSError, ValueError, TypeError):
        return []  # none yet, or damaged: list falls back to the *.crt files


def _entry(stem: str, cert: x509.Certificate) -> Issued:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return Issued(
        serial=_hex(cert),
        name=str(names[0].value) if names else "",
        stem=stem,
        kind=_kind(cert),
        not_after=cert.not_valid_after_utc.isoformat(),
    )


def _kind(cert: x509.Certificate) -> str:
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "ca"
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "client"
    return "server" if ExtendedKeyUsageOID.SERVER_AUTH in eku else "client"


def _hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")
