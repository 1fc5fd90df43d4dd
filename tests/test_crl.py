"""Certificates in operation: the issued index, revocation (CRL) and reload without restart."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from apiharness import ALICE, BOB, HANG, needs_root, open_gate
from cryptography import x509
from opsharness import OpsHarness

from tjob.api import certstore, pki, tls
from tjob.api.server import Reloaded
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_pb2_grpc import JobServiceStub
from tjob.cli import certs as certs_cli
from tjob.errors import TjobError


def test_index_list_and_revoke(certs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki.add_client(certs, "carol")
    names = {(e.kind, e.name) for e in certstore.issued(certs)}
    assert names == {
        ("ca", "tjob CA"),
        ("server", "tjobs"),
        ("client", "alice"),
        ("client", "bob"),
        ("client", "admin"),
        ("client", "carol"),
    }
    bob = x509.load_pem_x509_certificate((certs / "other.crt").read_bytes())
    done = certstore.revoke(certs, "bob")
    assert [int(e.serial, 16) for e in done] == [bob.serial_number]
    crl = certstore.crl_path(certs / "ca.crt")
    assert certstore.read_crl(crl, certs / "ca.crt") == {bob.serial_number}
    assert certstore.revoke(certs, "bob") == []  # already revoked: the CRL stays as it is
    carol = x509.load_pem_x509_certificate((certs / "carol.crt").read_bytes())
    certstore.revoke(certs, format(carol.serial_number, "X"))  # by serial, any case
    revoked = {e.name for e in certstore.issued(certs) if e.revoked}
    assert revoked == {"bob", "carol"}
    with pytest.raises(TjobError, match="server certificate"):
        certstore.revoke(certs, "tjobs")
    with pytest.raises(TjobError, match="no client certificate"):
        certstore.revoke(certs, "mallory")
    assert certs_cli.manage(["list", "--dir", str(certs)]) == 0
    out = capsys.readouterr().out
    assert any(ln.split()[:2] == ["client", "bob"] and "revoked" in ln for ln in out.splitlines())
    # A new CA makes the old CRL and index meaningless: they go with it.
    pki.init_dir(certs, force=True)
    assert not crl.exists() and not any(e.revoked for e in certstore.issued(certs))


def test_a_crl_from_another_ca_is_refused(certs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    pki.init_dir(other)
    certstore.revoke(other, "bob")
    with pytest.raises(TjobError, match="not signed by the CA"):
        tls.server_context(certs / "ca.crt", certs / "svc.crt", certs / "svc.key", other / "ca.crl")


def test_expiry_warnings(certs: Path) -> None:
    ca = pki.load(certs, "ca")
    soon = pki.issue_server(ca, days=100)
    (certs / "soon.crt").write_bytes(soon.cert_pem())
    files = {"server certificate": certs / "soon.crt", "CA certificate": certs / "ca.crt"}
    assert certstore.expiry_warnings(files) == []
    later = datetime.now(UTC) + timedelta(days=75)
    (warning,) = certstore.expiry_warnings(files, now=later)
    assert "server certificate" in warning and "soon.crt" in warning
    # A fresh 30-day certificate (what tjobs certs issues) is not worth a warning; a third of
    # its life left is.
    fresh = {"server certificate": certs / "svc.crt"}
    assert certstore.expiry_warnings(fresh) == []
    assert certstore.expiry_warnings(fresh, now=datetime.now(UTC) + timedelta(days=25))


@pytest.fixture
def h(tmp_path: Path, cgroup_parent: str) -> Iterator[OpsHarness]:
    with OpsHarness(tmp_path, cgroup_parent=cgroup_parent) as harness:
        yield harness


class Follow:
    """A ``logs -f`` in a thread: what it got, and how it ended."""

    def __init__(self, stub: JobServiceStub, job_id: str) -> None:
        self.data = b""
        self.error: grpc.RpcError | None = None
        self.first = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stub, job_id))
        self._thread.start()
        assert self.first.wait(HANG)

    def _run(self, stub: JobServiceStub, job_id: str) -> None:
        try:
            for chunk in stub.Logs(pb.LogsRequest(id=job_id, follow=True), timeout=HANG):
                self.data += chunk.data
                self.first.set()
        except grpc.RpcError as err:
            self.error = err
        finally:
            self.first.set()

    def join(self) -> None:
        self._thread.join(HANG)
        assert not self._thread.is_alive()


def _reload(h: OpsHarness) -> Reloaded:
    assert h.api is not None
    api = h.api

    async def reload() -> Reloaded:
        return api.reload()

    return h.call(reload())


def _served_serial(h: OpsHarness) -> int:
    ctx = tls.client_context(*h.files(ALICE))
    with (
        socket.create_connection(("127.0.0.1", h.port), timeout=HANG) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@needs_root
def test_revoked_client_is_refused_and_its_streams_closed(h: OpsHarness, gate: Path) -> None:
    argv = ["sh", "-c", f"echo start; cat {gate}; echo end"]
    bob_job, alice_job = h.run(argv, stem=BOB), h.run(argv)
    bob_follow = Follow(h.stub(BOB), bob_job.id)
    alice_follow = Follow(h.stub(ALICE), alice_job.id)
    assert bob_follow.data == alice_follow.data == b"start\n"

    certstore.revoke(h.certs, "bob")
    done = _reload(h)
    assert done.revoked == 1 and len(done.closed) >= 1 and all("bob" in c for c in done.closed)
    bob_follow.join()
    assert bob_follow.error is not None
    assert bob_follow.error.code() == grpc.StatusCode.UNAVAILABLE
    # New connections of bob's are refused in the handshake; alice is unaffected.
    with pytest.raises(grpc.RpcError) as info:
        h.stub(BOB).List(pb.ListRequest(), timeout=HANG)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert h.stub(ALICE).Status(pb.JobRef(id=alice_job.id), timeout=HANG).id == alice_job.id
    open_gate(gate)
    alice_follow.join()
    assert alice_follow.error is None and alice_follow.data == b"start\nend\n"


@needs_root
def test_server_certificate_reload_keeps_open_streams(h: OpsHarness, gate: Path) -> None:
    before = _served_serial(h)
    st = h.run(["sh", "-c", f"echo start; cat {gate}; echo end"])
    follow = Follow(h.stub(ALICE), st.id)
    renewed = pki.issue_server(pki.load(h.certs, "ca"), days=30)
    pki._write_pair(h.certs, "svc", renewed)
    done = _reload(h)
    assert done.closed == []
    after = _served_serial(h)
    assert before != after == renewed.cert.serial_number
    open_gate(gate)
    follow.join()
    assert follow.error is None and follow.data == b"start\nend\n"
    assert h.stub(ALICE).Status(pb.JobRef(id=st.id), timeout=HANG).id == st.id


@needs_root
def test_a_bad_file_on_reload_keeps_the_old_credentials(h: OpsHarness) -> None:
    before = _served_serial(h)
    (h.certs / "svc.key").write_bytes(pki.load(h.certs, "cli").key_pem())  # not svc.crt's key
    with pytest.raises(TjobError, match="not the key"):
        _reload(h)
    assert _served_serial(h) == before
    assert h.stub(ALICE).List(pb.ListRequest(), timeout=HANG) is not None


def test_ssl_module_has_crl_checks() -> None:
    assert ssl.VERIFY_CRL_CHECK_LEAF


@needs_root
def test_tjobs_reloads_on_crl_change_and_sighup_with_metrics_and_audit(
    certs: Path, tmp_path: Path
) -> None:
    import json
    import signal
    import urllib.request

    from support.net import free_port
    from support.tjobs import Tjobs

    mport, audit = free_port(), tmp_path / "audit.jsonl"
    r = Tjobs(
        certs, tmp_path / "state", "--metrics", f"127.0.0.1:{mport}", "--audit-log", str(audit)
    )
    try:
        r.expect("metrics on http://127.0.0.1:")
        r.expect("listen on")
        bob = r.stub("other")
        st = bob.Run(pb.RunRequest(argv=["sh", "-c", "echo up; exec sleep 300"]), timeout=HANG)
        follower = bob.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG)
        assert next(follower).data == b"up\n"
        # The file changed: tjobs notices within seconds, no signal needed.
        assert certs_cli.manage(["revoke", "--dir", str(certs), "bob"]) == 0
        r.expect("reloaded the certificates (1 revoked; closed 1 connections)")
        with pytest.raises(grpc.RpcError) as info:
            next(follower)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError):
            r.stub("other").List(pb.ListRequest(), timeout=HANG)
        r.stub("cli").List(pb.ListRequest(), timeout=HANG)
        r.proc.send_signal(signal.SIGHUP)
        r.expect("reloaded the certificates (1 revoked; closed 0 connections)")
        url = f"http://127.0.0.1:{mport}/metrics"
        with urllib.request.urlopen(url, timeout=HANG) as reply:
            text = reply.read().decode()
        assert 'tjob_rpcs_total{code="OK",method="run"} 1.0' in text
        assert 'tjob_client_running_jobs{client="bob"} 1.0' in text
        (line,) = [json.loads(x) for x in audit.read_text().splitlines()]
        assert line["method"] == "run" and line["identity"] == "bob" and line["job"] == st.id
        r.proc.send_signal(signal.SIGTERM)
        assert r.proc.wait(HANG) == 0
        assert not any("Traceback" in ln for ln in r.log)
    finally:
        r.close()
