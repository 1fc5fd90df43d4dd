"""Certificate authority tooling: a private CA, server and client certificates (ECDSA P-256).

``tjobs`` authenticates both ends with certificates from one private CA and authorizes each
client by its certificate's common name. :func:`init_dir` lays out the files the CLIs expect
under ``.tjob/`` (``ca``, ``svc``, ``cli`` = alice, ``other`` = bob, ``admin``);
:func:`add_client` issues one more identity from that CA. Keys are created mode 0600 in a
0700 directory, so a job (which never runs as the owner) cannot read them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tjob.errors import InvalidSpec, TjobError

DEFAULT_DIR = ".tjob"
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")
# Files init_dir writes besides the CA: file stem -> client identity (common name).
DEFAULT_CLIENTS = {"cli": "alice", "other": "bob", "admin": "admin"}
SERVER_STEM = "svc"
CA_STEM = "ca"

# Back-date certificates a little so a peer whose clock is slightly behind still accepts them.
_CLOCK_SKEW = timedelta(minutes=5)
# A file stem, which is also a common name: no path separators, no leading dot or dash.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_CN_MAX = 64  # X.509 upper bound for a common name


@dataclass(frozen=True)
class CertKey:
    """A certificate with its private key: the CA, a server or a client."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key in unencrypted PKCS#8 PEM (protected by file mode, not a password)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_ca(
    cn: str = "tjob CA",
    days: int = 365,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertKey:
    """A self-signed CA that may sign leaf certificates only (path length 0).

    ``days`` counts from now; ``not_before``/``not_after`` (timezone-aware) override it. The
    same holds for the leaf issuers, where ``days`` <= 0 yields an already expired certificate.
    """
    _check_cn(cn)
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before, not_after)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert, key)


def issue_server(
    ca: CertKey,
    sans: Iterable[str] = (),
    days: int = 30,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertKey:
    """A server certificate for localhost, 127.0.0.1, ::1 and each extra DNS name or IP."""
    return _issue(
        ca,
        "tjobs",
        ExtendedKeyUsageOID.SERVER_AUTH,
        days=days,
        not_before=not_before,
        not_after=not_after,
        sans=_subject_alt_names([*DEFAULT_SANS, *sans]),
    )


def issue_client(
    ca: CertKey,
    cn: str,
    days: int = 30,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertKey:
    """A client certificate whose subject common name is the identity ``cn`` (no SANs)."""
    _check_cn(cn)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH
    return _issue(ca, cn, usage, days=days, not_before=not_before, not_after=not_after)


def init_dir(
    path: str | os.PathLike[str] = DEFAULT_DIR,
    sans: Iterable[str] = (),
    ca_days: int = 365,
    leaf_days: int = 30,
    *,
    force: bool = False,
) -> list[Path]:
    """Create a CA and the server and default client certificates in ``path``.

    Returns the files written. Refuses to replace an existing CA unless ``force``, because
    every certificate that CA issued would stop working.
    """
    root = Path(path)
    existing = [p for p in (_crt(root, CA_STEM), _key(root, CA_STEM)) if p.exists()]
    if existing and not force:
        raise TjobError(
            f"refusing to overwrite the CA in {root} ({existing[0]} exists): replacing it "
            "invalidates every certificate it issued; to do so anyway, use tjobs certs --force "
            "(force=True)"
        )
    ca = make_ca(days=ca_days)
    leaves = {SERVER_STEM: issue_server(ca, sans, leaf_days)}
    leaves.update({stem: issue_client(ca, cn, leaf_days) for stem, cn in DEFAULT_CLIENTS.items()})
    _make_dir(root)
    for stale in (root / "issued.json", root / f"{CA_STEM}.crl"):  # the old CA's
        stale.unlink(missing_ok=True)
    written: list[Path] = []
    # The CA goes last: if anything fails before, a rerun needs no --force.
    for stem, item in [*leaves.items(), (CA_STEM, ca)]:
        written += _write_pair(root, stem, item)
    return written


def add_client(
    path: str | os.PathLike[str], name: str, days: int = 30, *, force: bool = False
) -> list[Path]:
    """Issue ``name``.crt/``name``.key (common name ``name``) from the CA in ``path``.

    Returns the files written. Refuses to replace an existing certificate unless ``force``.
    """
    root = Path(path)
    if not _NAME_RE.fullmatch(name):
        raise InvalidSpec(
            f"client name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    if name in (CA_STEM, SERVER_STEM):
        raise InvalidSpec(f"client name {name!r} is reserved for {_crt(root, name)}")
    if not force and (_crt(root, name).exists() or _key(root, name).exists()):
        raise TjobError(
            f"{_crt(root, name)} already exists; use --force (force=True) to replace it"
        )
    if not _crt(root, CA_STEM).exists():
        raise TjobError(
            f"no CA in {root} ({_crt(root, CA_STEM)} is missing): run tjobs certs first"
        )
    ca = load(root, CA_STEM)
    if not _is_ca(ca.cert):
        raise TjobError(f"{_crt(root, CA_STEM)} is not a CA certificate")
    if ca.cert.not_valid_after_utc <= datetime.now(UTC):
        raise TjobError(
            f"the CA in {root} expired on {ca.cert.not_valid_after_utc:%Y-%m-%d}; "
            "create a new one with tjobs certs --force"
        )
    return _write_pair(root, name, issue_client(ca, name, days))


def load(path: str | os.PathLike[str], stem: str) -> CertKey:
    """Read ``stem``.crt and ``stem``.key from directory ``path`` and check they belong together."""
    crt, key_path = _crt(Path(path), stem), _key(Path(path), stem)
    try:
        cert = x509.load_pem_x509_certificate(_read(crt, "certificate"))
    except ValueError as err:
        raise TjobError(f"{crt} is not a PEM certificate: {err}") from err
    try:
        key = serialization.load_pem_private_key(_read(key_path, "private key"), password=None)
    except (ValueError, TypeError) as err:
        raise TjobError(f"{key_path} is not an unencrypted PEM private key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TjobError(f"{key_path} is not an ECDSA key")
    if key.public_key() != cert.public_key():
        raise TjobError(f"{key_path} is not the key of {crt}")
    return CertKey(cert, key)


def _issue(
    ca: CertKey,
    cn: str,
    usage: x509.ObjectIdentifier,
    *,
    days: int,
    not_before: datetime | None,
    not_after: datetime | None,
    sans: x509.SubjectAlternativeName | None = None,
) -> CertKey:
    """A leaf certificate signed by ``ca`` for one extended key usage."""
    start, end = _validity(days, not_before, not_after)
    if end > ca.cert.not_valid_after_utc:
        raise InvalidSpec(
            f"a certificate valid until {end:%Y-%m-%d} would outlive its CA (valid until "
            f"{ca.cert.not_valid_after_utc:%Y-%m-%d}): issue it for fewer days or make a new CA"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # TLS 1.3 uses the leaf key only to sign; there is no static ECDH, so no keyAgreement.
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(_authority_key_id(ca), critical=False)
    )
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    return CertKey(builder.sign(ca.key, hashes.SHA256()), key)


def _authority_key_id(ca: CertKey) -> x509.AuthorityKeyIdentifier:
    """Point at the CA's own key identifier, which chain building matches against."""
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:  # a CA made elsewhere
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """digitalSignature for a leaf; keyCertSign and cRLSign for the CA."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _is_ca(cert: x509.Certificate) -> bool:
    """Whether ``cert`` says it is a CA (BasicConstraints CA=true)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _validity(
    days: int, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    """The validity window; ``days`` <= 0 gives a certificate that has already expired."""
    now = datetime.now(UTC).replace(microsecond=0)
    end = not_after if not_after is not None else now + timedelta(days=days)
    start = not_before if not_before is not None else min(now - _CLOCK_SKEW, end - timedelta(1))
    if start >= end:
        raise InvalidSpec(f"certificate validity is empty: not_before {start} >= not_after {end}")
    return start, end


def _subject_alt_names(names: Iterable[str]) -> x509.SubjectAlternativeName:
    """DNS names and IP addresses, deduplicated in order; InvalidSpec names a bad one."""
    general: list[x509.GeneralName] = []
    for name in dict.fromkeys(n.strip() for n in names):
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not _DNS_RE.fullmatch(name):
            raise InvalidSpec(f"server name {name!r} is neither an IP address nor a DNS name")
        general.append(x509.DNSName(name.lower()))
    return x509.SubjectAlternativeName(general)


def _check_cn(cn: str) -> None:
    """A common name must be non-empty, printable and fit X.509's 64-character bound."""
    if not cn or len(cn) > _CN_MAX or not cn.isprintable() or cn != cn.strip():
        raise InvalidSpec(
            f"common name {cn!r} must be 1-{_CN_MAX} printable characters without outer spaces"
        )


def _crt(root: Path, stem: str) -> Path:
    return root / f"{stem}.crt"


def _key(root: Path, stem: str) -> Path:
    return root / f"{stem}.key"


def _read(path: Path, what: str) -> bytes:
    """The bytes of ``path``; TjobError naming the file and the reason otherwise."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise TjobError(f"cannot read {what} {path}: {err.strerror or err}") from err


def _make_dir(root: Path) -> None:
    """Create ``root`` (and missing parents) mode 0700; an existing directory is kept as is."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise TjobError(f"cannot create directory {root}: {err.strerror or err}") from err


def _write_pair(root: Path, stem: str, item: CertKey) -> list[Path]:
    """Write ``stem``.crt (0644) and ``stem``.key (0600); returns both paths."""
    crt, key = _crt(root, stem), _key(root, stem)
    _write(crt, item.cert_pem(), 0o644)
    _write(key, item.key_pem(), 0o600)
    from tjob.api import certstore  # imports this module

    certstore.record_issued(root, stem, item.cert)
    return [crt, key]


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically with a new file that has ``mode`` before any byte is written.

    A fresh file (mkstemp creates it 0600) is renamed over the target, so an old file's looser
    mode never carries over to a new key and a reader never sees half a file.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as err:
        raise TjobError(f"cannot write {path}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exact mode, whatever the umask; still empty here
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise TjobError(f"cannot write {path}: {err.strerror or err}") from err
