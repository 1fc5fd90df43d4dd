"""Transport security of the real server: mutual TLS 1.3 only, the CA's clients only.

Each negative case is a real handshake against the running server, with grpcio (the product's
client) or Python's ssl where grpcio cannot express the client (TLS 1.2 only).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from apiharness import ALICE, HANG, ROOT, Harness
from cryptography import x509
from cryptography.x509.oid import NameOID
from support.certs import issue

from tjob.api import pki, tls
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_pb2_grpc import JobServiceStub

pytestmark = ROOT


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with Harness(tmp_path_factory.mktemp("tls")) as harness:
        yield harness


def write(dir_: Path, stem: str, item: pki.CertKey) -> tuple[Path, Path]:
    crt, key = dir_ / f"{stem}.crt", dir_ / f"{stem}.key"
    crt.write_bytes(item.cert_pem())
    key.write_bytes(item.key_pem())
    key.chmod(0o600)
    return crt, key


def list_as(h: Harness, creds: grpc.ChannelCredentials, **options: str) -> grpc.RpcError | None:
    with grpc.secure_channel(h.target, creds, options=list(options.items())) as ch:
        try:
            JobServiceStub(ch).List(pb.ListRequest(), timeout=HANG)
        except grpc.RpcError as err:
            return err
    return None


def creds_from(
    ca: Path, crt: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=crt.read_bytes() if crt else None,
    )


def test_a_client_of_the_ca_gets_through(h: Harness) -> None:
    assert list_as(h, tls.client_credentials(*h.files(ALICE))) is None


def test_no_client_certificate_is_refused(h: Harness) -> None:
    err = list_as(h, creds_from(h.certs / "ca.crt"))
    assert err is not None and err.code() is grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_is_refused(h: Harness, tmp_path: Path) -> None:
    rogue_ca = pki.make_ca("rogue CA")
    crt, key = write(tmp_path, "alice", pki.issue_client(rogue_ca, "alice"))
    err = list_as(h, creds_from(h.certs / "ca.crt", crt, key))
    assert err is not None and err.code() is grpc.StatusCode.UNAVAILABLE


def test_expired_certificate_is_refused(h: Harness, tmp_path: Path) -> None:
    ca = pki.load(h.certs, "ca")
    crt, key = write(tmp_path, "alice", pki.issue_client(ca, "alice", days=0))
    err = list_as(h, creds_from(h.certs / "ca.crt", crt, key))
    assert err is not None and err.code() is grpc.StatusCode.UNAVAILABLE


def test_server_certificate_cannot_act_as_a_client(h: Harness) -> None:
    # Same CA, but its extended key usage is serverAuth only.
    err = list_as(h, creds_from(*h.files("svc")))
    assert err is not None and err.code() is grpc.StatusCode.UNAVAILABLE


def test_certificate_without_common_name_is_unauthenticated(h: Harness, tmp_path: Path) -> None:
    no_cn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nobody")])
    crt, key_path = issue(tmp_path, "anon", no_cn, ca=h.certs)
    err = list_as(h, creds_from(h.certs / "ca.crt", crt, key_path))
    assert err is not None and err.code() is grpc.StatusCode.UNAUTHENTICATED


def test_wrong_server_name_is_refused_by_the_client(h: Harness) -> None:
    creds = tls.client_credentials(*h.files(ALICE))
    err = list_as(h, creds, **{"grpc.ssl_target_name_override": "wrong.example"})
    assert err is not None and err.code() is grpc.StatusCode.UNAVAILABLE
    # The same with a plain TLS client: the name check fails in the handshake.
    ctx = tls.client_context(*h.files(ALICE))
    with (
        socket.create_connection(("127.0.0.1", h.port), timeout=HANG) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        ctx.wrap_socket(raw, server_hostname="wrong.example")


def handshake(h: Harness, ctx: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", h.port), timeout=HANG) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        return conn.version()


def test_tls12_only_client_is_refused_in_the_handshake(h: Harness) -> None:
    ctx = tls.client_context(*h.files(ALICE))
    assert handshake(h, ctx) == "TLSv1.3"  # the control: same files, TLS 1.3 allowed
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(h, ctx)
