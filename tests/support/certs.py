"""Certificates ``tjobs certs`` would never make: signed by a test CA for any subject, with or
without clientAuth, as a hostile or sloppy CA operator could."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tjob.api import pki


def issue(
    where: Path, stem: str, subject: x509.Name, *, eku: bool = True, ca: Path | None = None
) -> tuple[Path, Path]:
    """Sign a certificate for ``subject`` with the CA in ``ca`` (default: ``where``), with
    clientAuth unless ``eku`` is False; write it as ``where/STEM.crt`` and ``.key``; their paths."""
    authority = pki.load(ca or where, "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), False
        )
    )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    item = pki.CertKey(b.sign(authority.key, hashes.SHA256()), key)
    crt, key_path = where / f"{stem}.crt", where / f"{stem}.key"
    crt.write_bytes(item.cert_pem())
    key_path.write_bytes(item.key_pem())
    return crt, key_path


def client_cert(certs: Path, stem: str, cn: str, *, eku: bool = True) -> None:
    """A certificate from the CA in ``certs`` with any common name (see ``issue``)."""
    issue(certs, stem, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]), eku=eku)
