"""tjob.api.pki: real certificates, their extensions, file modes, and the certs command."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tjob.api import pki
from tjob.cli import certs
from tjob.errors import InvalidSpec, TjobError

E = TypeVar("E", bound=x509.ExtensionType)
LEAVES = {"svc": "tjobs", "cli": "alice", "other": "bob", "admin": "admin"}


@pytest.fixture(scope="module")
def tjob_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised .tjob directory with two extra server names, shared by read-only tests."""
    path = tmp_path_factory.mktemp("pki") / ".tjob"
    pki.init_dir(path, sans=["tjob.example", "10.9.8.7", "fd00::7"])
    return path


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Run with a umask that masks nothing, so the modes seen are the ones tjob asked for."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def cert(path: Path, stem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((path / f"{stem}.crt").read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cn(c: x509.Certificate) -> str:
    (attr,) = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attr.value)


def ext(c: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return c.extensions.get_extension_for_class(kind)


def test_init_dir_writes_every_file_with_owner_only_keys(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "sub" / ".tjob"
    written = pki.init_dir(path)
    stems = ["ca", *LEAVES]
    assert sorted(written) == sorted(path / f"{s}.{e}" for s in stems for e in ("crt", "key"))
    assert mode(path) == 0o700
    for stem in stems:
        assert mode(path / f"{stem}.key") == 0o600, stem
        assert mode(path / f"{stem}.crt") == 0o644, stem
    assert not [p.name for p in path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_ca_key_is_not_group_or_world_readable(tjob_dir: Path) -> None:
    assert mode(tjob_dir / "ca.key") & 0o077 == 0
    assert mode(tjob_dir) & 0o077 == 0


def test_ca_extensions(tjob_dir: Path) -> None:
    ca = cert(tjob_dir, "ca")
    assert ca.subject == ca.issuer
    assert cn(ca) == "tjob CA"
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical
    assert (bc.value.ca, bc.value.path_length) == (True, 0)
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = ext(ca, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    assert ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=365) <= lifetime <= timedelta(days=366)


@pytest.mark.parametrize(("stem", "name"), LEAVES.items())
def test_leaf_is_signed_by_the_ca_with_a_p256_key(tjob_dir: Path, stem: str, name: str) -> None:
    ca, leaf = cert(tjob_dir, "ca"), cert(tjob_dir, stem)
    leaf.verify_directly_issued_by(ca)
    assert cn(leaf) == name
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    bc = ext(leaf, x509.BasicConstraints)
    assert bc.critical
    assert not bc.value.ca
    ku = ext(leaf, x509.KeyUsage).value
    assert ku.digital_signature
    assert not (ku.key_cert_sign or ku.crl_sign or ku.key_encipherment)
    ca_ski = ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=30) <= lifetime <= timedelta(days=31)


def test_server_certificate_names_and_usage(tjob_dir: Path) -> None:
    svc = cert(tjob_dir, "svc")
    assert list(ext(svc, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = ext(svc, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "tjob.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.9.8.7", "fd00::7")
    ]


@pytest.mark.parametrize("stem", ["cli", "other", "admin"])
def test_client_certificate_usage(tjob_dir: Path, stem: str) -> None:
    client = cert(tjob_dir, stem)
    assert list(ext(client, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):  # the identity is the CN, nothing else
        ext(client, x509.SubjectAlternativeName)


def test_init_dir_refuses_to_overwrite_a_ca(tmp_path: Path) -> None:
    pki.init_dir(tmp_path)
    before = (tmp_path / "ca.crt").read_bytes()
    with pytest.raises(TjobError, match="--force"):
        pki.init_dir(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == before
    pki.init_dir(tmp_path, force=True)
    assert (tmp_path / "ca.crt").read_bytes() != before
    cert(tmp_path, "cli").verify_directly_issued_by(cert(tmp_path, "ca"))


def test_force_gives_a_replaced_key_mode_0600(tmp_path: Path) -> None:
    pki.init_dir(tmp_path)
    (tmp_path / "cli.key").chmod(0o644)
    pki.init_dir(tmp_path, force=True)
    assert mode(tmp_path / "cli.key") == 0o600


def test_add_client_issues_from_the_existing_ca(tmp_path: Path, umask_zero: None) -> None:
    pki.init_dir(tmp_path)
    written = pki.add_client(tmp_path, "carol", days=7)
    assert written == [tmp_path / "carol.crt", tmp_path / "carol.key"]
    carol = cert(tmp_path, "carol")
    carol.verify_directly_issued_by(cert(tmp_path, "ca"))
    assert cn(carol) == "carol"
    assert list(ext(carol, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert carol.not_valid_after_utc - carol.not_valid_before_utc <= timedelta(days=7, hours=1)
    assert (mode(written[0]), mode(written[1])) == (0o644, 0o600)
    loaded = pki.load(tmp_path, "carol")
    assert loaded.cert == carol


def test_add_client_refusals(tmp_path: Path) -> None:
    with pytest.raises(TjobError, match=r"no CA in .*ca\.crt is missing"):
        pki.add_client(tmp_path, "carol")
    pki.init_dir(tmp_path)
    with pytest.raises(TjobError, match="already exists"):
        pki.add_client(tmp_path, "cli")
    for reserved in ("ca", "svc"):
        with pytest.raises(InvalidSpec, match="reserved"):
            pki.add_client(tmp_path, reserved, force=True)
    for bad in ("", "../x", "a/b", ".hidden", "-rf", "x" * 65, "caf\u00e9"):
        with pytest.raises(InvalidSpec, match="not allowed"):
            pki.add_client(tmp_path, bad)
    with pytest.raises(InvalidSpec, match="outlive its CA"):
        pki.add_client(tmp_path, "dave", days=400)


def test_add_client_refuses_a_ca_whose_key_does_not_match(tmp_path: Path) -> None:
    pki.init_dir(tmp_path)
    (tmp_path / "ca.key").write_bytes((tmp_path / "svc.key").read_bytes())
    with pytest.raises(TjobError, match=r"ca\.key is not the key of .*ca\.crt"):
        pki.add_client(tmp_path, "carol")


def test_add_client_refuses_an_expired_ca(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = pki.make_ca(not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    (tmp_path / "ca.key").write_bytes(ca.key_pem())
    with pytest.raises(TjobError, match="expired"):
        pki.add_client(tmp_path, "carol")


@pytest.mark.parametrize("days", [0, -3])
def test_non_positive_days_give_an_expired_certificate(days: int) -> None:
    ca = pki.make_ca()
    eve = pki.issue_client(ca, "eve", days=days)
    now = datetime.now(UTC)
    assert eve.cert.not_valid_before_utc < eve.cert.not_valid_after_utc <= now
    eve.cert.verify_directly_issued_by(ca.cert)


def test_explicit_validity_window() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    ca = pki.make_ca(not_before=start, not_after=start + timedelta(days=100))
    leaf = pki.issue_server(ca, not_before=start, not_after=start + timedelta(days=2))
    assert leaf.cert.not_valid_before_utc == start
    assert leaf.cert.not_valid_after_utc == start + timedelta(days=2)
    with pytest.raises(InvalidSpec, match="validity is empty"):
        pki.issue_client(ca, "x", not_before=start, not_after=start)


@pytest.mark.parametrize("name", ["", "bad name", "-x.example", "a..b", "x" * 64 + ".example"])
def test_bad_server_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidSpec, match="neither an IP address nor a DNS name"):
        pki.issue_server(pki.make_ca(), [name])


@pytest.mark.parametrize("name", ["", " alice", "x" * 65, "tab\there"])
def test_bad_common_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidSpec, match="common name"):
        pki.issue_client(pki.make_ca(), name)


def test_load_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TjobError, match=rf"cannot read certificate {tmp_path}/cli\.crt: No such"):
        pki.load(tmp_path, "cli")


def test_certs_command_initialises_then_adds_a_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / ".tjob"
    assert certs.main(["--dir", str(d), "--san", "tjob.example", "--days", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 10
    assert f"wrote {d}/ca.key" in out
    assert "tjob.example" in ext(
        cert(d, "svc"), x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)

    assert certs.main(["--dir", str(d)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tjobs certs: refusing to overwrite the CA")
    assert "--force" in captured.err

    assert certs.main(["--dir", str(d), "--client", "carol"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {d}/carol.crt", f"wrote {d}/carol.key"]
    assert certs.main(["--dir", str(d), "--client", "dave", "--san", "x"]) == 1
    assert "not with --client" in capsys.readouterr().err


def test_certs_command_refuses_non_positive_days(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        certs.main(["--days", "0"])
    assert exit_info.value.code == 2
    assert "not a positive number of days" in capsys.readouterr().err
