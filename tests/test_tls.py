"""tjob.api.tls: real TLS handshakes over loopback between the server and client contexts.

Each test starts a one-connection TLS server in a thread; it records the handshake error or the
client's identity, which the test reads after joining the thread.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from support.timeouts import HANG

from tjob.api import pki, tls
from tjob.errors import TjobError

# An empty HTTP/2 SETTINGS frame: the server half of the preface, enough for grpcio to be READY.
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class OneShotServer:
    """Accept one TLS connection, greet the client and wait for it to hang up."""

    def __init__(self, ctx: ssl.SSLContext, host: str = "127.0.0.1", greeting: bytes = b"") -> None:
        self.ctx = ctx
        self.greeting = greeting
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, 0), family=family)
        self.sock.settimeout(HANG)
        self.port: int = self.sock.getsockname()[1]
        self.error: OSError | None = None
        self.identity: str | None = None
        self.alpn: str | None = None
        self.handshaken = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(HANG)
            with self.ctx.wrap_socket(conn, server_side=True) as sock:
                self.identity = tls.identity_from_peercert(sock.getpeercert())
                self.alpn = sock.selected_alpn_protocol()
                self.handshaken.set()
                sock.sendall(self.greeting or f"hello {self.identity}".encode())
                while sock.recv(65536):
                    pass
        except OSError as err:  # ssl.SSLError included
            self.error = err
        finally:
            self.sock.close()

    def join(self) -> None:
        self.thread.join(HANG)
        assert not self.thread.is_alive(), "server thread hung"


def talk(ctx: ssl.SSLContext, port: int, hostname: str = "localhost") -> bytes:
    """Connect, handshake and read the greeting (b"" if the server hung up instead)."""
    host = "::1" if ":" in hostname else "127.0.0.1"
    with (
        socket.create_connection((host, port), timeout=HANG) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as sock,
    ):
        return sock.recv(100)


def handshake_refused(
    client: ssl.SSLContext, server: ssl.SSLContext
) -> tuple[OSError | None, OSError]:
    """Run one connection that must fail; the client's error (None on a bare EOF) and the server's.

    In TLS 1.3 the client's handshake ends before the server has checked the client certificate,
    so a refused client may only see the failure on its first read.
    """
    srv = OneShotServer(server)
    client_error: OSError | None = None
    try:
        data = talk(client, srv.port)
    except OSError as err:  # ssl.SSLError, ConnectionResetError, BrokenPipeError
        client_error = err
    else:
        assert data == b"", f"the server talked to a client it should have refused: {data!r}"
    srv.join()
    assert srv.identity is None
    assert srv.error is not None, "the server accepted the connection"
    return client_error, srv.error


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / ".tjob"
    pki.init_dir(path, sans=["tjob.example"])
    return path


@pytest.fixture(scope="module")
def server_ctx(d: Path) -> ssl.SSLContext:
    return tls.server_context(d / "ca.crt", d / "svc.crt", d / "svc.key")


def client_ctx(d: Path, stem: str = "cli", ca: str = "ca") -> ssl.SSLContext:
    return tls.client_context(d / f"{ca}.crt", d / f"{stem}.crt", d / f"{stem}.key")


def save(d: Path, stem: str, item: pki.CertKey) -> None:
    (d / f"{stem}.crt").write_bytes(item.cert_pem())
    (d / f"{stem}.key").write_bytes(item.key_pem())


def verify_message(err: OSError | None) -> str:
    assert isinstance(err, ssl.SSLCertVerificationError), repr(err)
    return str(err.verify_message)


def test_contexts_are_tls13_only_and_require_certificates(
    d: Path, server_ctx: ssl.SSLContext
) -> None:
    client = client_ctx(d)
    for ctx in (server_ctx, client):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname


@pytest.mark.parametrize(("stem", "identity"), [("cli", "alice"), ("other", "bob")])
def test_good_client_gets_through_and_server_sees_its_cn(
    d: Path, server_ctx: ssl.SSLContext, stem: str, identity: str
) -> None:
    srv = OneShotServer(server_ctx)
    assert talk(client_ctx(d, stem), srv.port) == f"hello {identity}".encode()
    srv.join()
    assert srv.error is None
    assert srv.identity == identity
    assert srv.alpn == "h2"


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "tjob.example"])
def test_server_names_in_the_certificate_verify(
    d: Path, server_ctx: ssl.SSLContext, hostname: str
) -> None:
    srv = OneShotServer(server_ctx)
    assert talk(client_ctx(d), srv.port, hostname) == b"hello alice"
    srv.join()


def test_ipv6_loopback_verifies(d: Path, server_ctx: ssl.SSLContext) -> None:
    try:
        srv = OneShotServer(server_ctx, host="::1")
    except OSError as err:
        pytest.skip(f"no IPv6 loopback here: {err}")
    assert talk(client_ctx(d), srv.port, "::1") == b"hello alice"
    srv.join()


def test_tls12_only_client_fails_the_handshake(d: Path, server_ctx: ssl.SSLContext) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    old.load_verify_locations(d / "ca.crt")
    old.load_cert_chain(d / "cli.crt", d / "cli.key")
    srv = OneShotServer(server_ctx)
    with (
        socket.create_connection(("127.0.0.1", srv.port), timeout=HANG) as raw,
        pytest.raises(OSError),  # in the handshake itself, not on a later read
    ):
        old.wrap_socket(raw, server_hostname="localhost")
    srv.join()
    assert isinstance(srv.error, ssl.SSLError)
    assert srv.error.reason == "UNSUPPORTED_PROTOCOL"
    assert srv.identity is None


def test_client_without_certificate_is_refused(d: Path, server_ctx: ssl.SSLContext) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(d / "ca.crt")
    client_error, server_error = handshake_refused(anonymous, server_ctx)
    assert isinstance(server_error, ssl.SSLError)
    assert server_error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    if client_error is not None:
        assert "certificate required" in str(client_error) or isinstance(
            client_error, ConnectionError
        )


def test_client_certificate_from_another_ca_is_refused(
    d: Path, tmp_path: Path, server_ctx: ssl.SSLContext
) -> None:
    save(tmp_path, "mallory", pki.issue_client(pki.make_ca("evil CA"), "alice"))
    client = tls.client_context(d / "ca.crt", tmp_path / "mallory.crt", tmp_path / "mallory.key")
    _, server_error = handshake_refused(client, server_ctx)
    assert verify_message(server_error) == "unable to get local issuer certificate"


def test_expired_client_certificate_is_refused(
    d: Path, tmp_path: Path, server_ctx: ssl.SSLContext
) -> None:
    ca = pki.load(d, "ca")
    now = datetime.now(UTC)
    save(tmp_path, "old", pki.issue_client(ca, "alice", not_after=now - timedelta(minutes=1)))
    client = tls.client_context(d / "ca.crt", tmp_path / "old.crt", tmp_path / "old.key")
    _, server_error = handshake_refused(client, server_ctx)
    assert verify_message(server_error) == "certificate has expired"


def test_server_certificate_presented_by_a_client_is_refused(
    d: Path, server_ctx: ssl.SSLContext
) -> None:
    _, server_error = handshake_refused(client_ctx(d, "svc"), server_ctx)
    assert verify_message(server_error) == "unsuitable certificate purpose"


def test_client_rejects_a_server_whose_name_does_not_match(
    d: Path, server_ctx: ssl.SSLContext
) -> None:
    srv = OneShotServer(server_ctx)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        talk(client_ctx(d), srv.port, "elsewhere.example")
    assert "Hostname mismatch" in str(info.value.verify_message)
    srv.join()
    assert srv.identity is None


def test_client_rejects_a_client_certificate_presented_by_a_server(d: Path) -> None:
    impostor = tls.server_context(d / "ca.crt", d / "other.crt", d / "other.key")
    client = client_ctx(d)
    client.check_hostname = False  # isolate the key-usage check from the name check
    srv = OneShotServer(impostor)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        talk(client, srv.port)
    assert info.value.verify_message == "unsuitable certificate purpose"
    srv.join()


def test_add_client_certificate_is_accepted_with_its_new_cn(tmp_path: Path) -> None:
    pki.init_dir(tmp_path)
    pki.add_client(tmp_path, "carol")
    srv = OneShotServer(
        tls.server_context(tmp_path / "ca.crt", tmp_path / "svc.crt", tmp_path / "svc.key")
    )
    assert talk(client_ctx(tmp_path, "carol"), srv.port) == b"hello carol"
    srv.join()
    assert srv.identity == "carol"


def test_grpcio_credentials_complete_a_tls13_handshake(d: Path, server_ctx: ssl.SSLContext) -> None:
    srv = OneShotServer(server_ctx, greeting=H2_SETTINGS)
    creds = tls.client_credentials(d / "ca.crt", d / "cli.crt", d / "cli.key")
    with grpc.secure_channel(f"localhost:{srv.port}", creds) as channel:
        grpc.channel_ready_future(channel).result(timeout=HANG)
        assert srv.handshaken.wait(HANG)
    srv.join()
    assert srv.identity == "alice"
    assert srv.alpn == "h2"


def test_identity_from_peercert() -> None:
    def subject(*rdns: tuple[tuple[str, str], ...]) -> dict[str, object]:
        return {"subject": rdns}

    assert tls.identity_from_peercert(subject((("commonName", "alice"),))) == "alice"
    org = (("organizationName", "tjob"),)
    assert tls.identity_from_peercert(subject(org, (("commonName", "bob"),))) == "bob"
    assert tls.identity_from_peercert(subject(org)) is None
    two = subject((("commonName", "alice"),), (("commonName", "admin"),))
    assert tls.identity_from_peercert(two) is None
    assert tls.identity_from_peercert(subject((("commonName", ""),))) is None
    assert tls.identity_from_peercert({}) is None
    assert tls.identity_from_peercert(None) is None


@pytest.mark.parametrize("make", [tls.client_context, tls.client_credentials])
def test_missing_files_are_named(d: Path, tmp_path: Path, make: Callable[..., object]) -> None:
    missing = tmp_path / "cli.crt"
    with pytest.raises(TjobError) as info:
        make(d / "ca.crt", missing, d / "cli.key")
    assert str(info.value) == f"cannot read client certificate {missing}: No such file or directory"
    with pytest.raises(TjobError, match=rf"^cannot read CA certificate {tmp_path}: Is a directory"):
        make(tmp_path, d / "cli.crt", d / "cli.key")
    with pytest.raises(TjobError, match=rf"^cannot read client key {tmp_path}/nokey: No such"):
        make(d / "ca.crt", d / "cli.crt", tmp_path / "nokey")


def test_server_context_names_its_files(d: Path, tmp_path: Path) -> None:
    with pytest.raises(TjobError, match=rf"^cannot read server key {tmp_path}/svc\.key: No such"):
        tls.server_context(d / "ca.crt", d / "svc.crt", tmp_path / "svc.key")


def test_bad_file_contents_are_explained(d: Path, tmp_path: Path) -> None:
    with pytest.raises(
        TjobError, match=r"other\.key with certificate .*cli\.crt: it is not the key"
    ):
        tls.client_context(d / "ca.crt", d / "cli.crt", d / "other.key")
    with pytest.raises(TjobError, match=r"^CA certificate .*cli\.key is not a PEM certificate"):
        tls.client_context(d / "cli.key", d / "cli.crt", d / "cli.key")
    with pytest.raises(TjobError, match=r"^client key .*cli\.crt is not a PEM private key"):
        tls.client_context(d / "ca.crt", d / "cli.crt", d / "cli.crt")
    key = pki.load(d, "cli").key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "enc.key").write_bytes(key)
    with pytest.raises(TjobError, match="is encrypted"):
        tls.client_context(d / "ca.crt", d / "cli.crt", tmp_path / "enc.key")
