"""The ``tjobs`` command as a real process: flags, start-up refusals, signals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from apiharness import HANG, needs_root
from support.net import free_port  # noqa: F401 (see Running)
from support.tjobs import TJOBS, Tjobs, startup_refusal

from tjob import JobSpec
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.cli.startup import parse_host
from tjob.cli.tjobsargs import build_parser

# The names test files imported from here before tests/support (some may still be written so).
Running = Tjobs


def tjobs(
    *args: str, prefix: tuple[str, ...] = (), cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *TJOBS, *args], check=False, capture_output=True, text=True, timeout=HANG, cwd=cwd
    )


def cert_flags(certs: Path) -> list[str]:
    # The seed's single-dash spellings, on purpose.
    return [
        "-ca",
        str(certs / "ca.crt"),
        "-cert",
        str(certs / "svc.crt"),
        "-key",
        str(certs / "svc.key"),
    ]


# --- parsing ------------------------------------------------------------------------------------


def test_seed_and_gnu_spellings_are_the_same_flags() -> None:
    p = build_parser()
    seed = p.parse_args(["-mnt", "254:0", "-cpu", "30", "-host", ":9000", "-admin", "ops"])
    gnu = p.parse_args(["--mnt", "254:0", "--cpu", "30", "--host", ":9000", "--admin", "ops"])
    assert seed == gnu
    assert (seed.mnt, seed.cpu, seed.host, seed.admin) == ("254:0", 30, ":9000", ["ops"])
    d = p.parse_args([])
    assert (d.host, d.ca, d.cert, d.key) == (
        "localhost:8080",
        ".tjob/ca.crt",
        ".tjob/svc.crt",
        ".tjob/svc.key",
    )
    assert (d.cpu, d.mem, d.rbps, d.wbps, d.pids, d.mnt) == (20, 20, 20971520, 20971520, 512, None)
    assert (d.state_dir, d.job_user, d.max_jobs, d.admin) == ("/var/lib/tjob", None, 64, [])
    assert (d.uid_range, d.client_jobs, d.client_disk) == (None, 10_000, 10 << 30)


def test_host_forms() -> None:
    assert parse_host("localhost:8080") == ("localhost", 8080)
    assert parse_host("[::1]:8080") == ("::1", 8080)
    assert parse_host(":8080") == (None, 8080)


def test_help_shows_the_seed_flags() -> None:
    proc = tjobs("-h")
    assert proc.returncode == 0
    for flag in ("--host", "-host", "-mnt", "--state-dir", "--max-jobs", "--job-user", "certs"):
        assert flag in proc.stdout


def test_certs_subcommand(tmp_path: Path) -> None:
    proc = tjobs("certs", "--dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in (tmp_path / "c").iterdir()}
    assert {"ca.crt", "svc.key", "cli.crt", "other.key", "admin.crt"} <= names


# --- refusals at start-up -----------------------------------------------------------------------


def test_refuses_without_root(certs: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to drop root")
    # A user namespace without a mapping: euid 65534, no capabilities, files still readable.
    probe = subprocess.run(
        ["unshare", "--user", "true"], check=False, capture_output=True, timeout=HANG
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot create a user namespace here: {probe.stderr.decode().strip()}")
    assert "must run as root" in startup_refusal(
        tjobs(*cert_flags(certs), prefix=("unshare", "--user"))
    )


@needs_root
def test_refuses_missing_cert_naming_it(certs: Path, tmp_path: Path) -> None:
    (certs / "svc.key").unlink()
    proc = tjobs(*cert_flags(certs), "--state-dir", str(tmp_path / "state"))
    assert f"server key {certs / 'svc.key'} not found" in startup_refusal(proc)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = tjobs("--state-dir", str(tmp_path / "state"), cwd=empty)  # the default paths
    assert "CA certificate .tjob/ca.crt not found" in startup_refusal(proc)


@needs_root
def test_refuses_port_in_use(certs: Path, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = tjobs(
            *cert_flags(certs), "-host", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state")
        )
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in startup_refusal(proc)


@needs_root
def test_refuses_bad_device_and_bad_flags(certs: Path, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    for flags, message in [
        (["-mnt", "999:999"], "not a block device"),
        (["--cpu", "0"], "cpu_percent must be positive"),
        (["--job-user", "no-such-user-x"], "no such user"),
        (["--host", "nonsense"], "is not HOST:PORT"),
        (["--client-rate", "0"], "--client-rate"),
    ]:
        assert message in startup_refusal(tjobs(*cert_flags(certs), *state, *flags))


@needs_root
def test_refuses_a_uid_range_that_real_accounts_use(certs: Path, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]

    def refusal(*flags: str) -> str:
        return startup_refusal(tjobs(*cert_flags(certs), *state, *flags))

    overlap = "uid range 65530-65534 overlaps existing accounts: user nobody (65534)"
    assert overlap in refusal("--uid-range", "65530-65534")
    assert "uid range 9-1 must be" in refusal("--uid-range", "9-1")
    assert "a uid range is FIRST-LAST" in refusal("--uid-range", "x")
    both = ("--uid-range", "61184-61200", "--job-user", "nobody")
    assert "--job-user and --uid-range exclude" in refusal(*both)
    assert not (tmp_path / "state").exists()  # refused before anything was made


@needs_root
def test_refuses_limits_that_need_more_descriptors_than_it_may_open(
    certs: Path, tmp_path: Path
) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    low = ("prlimit", "--nofile=2000:2000")  # the defaults need 1024 + 2000 + 1024
    proc = tjobs(*cert_flags(certs), *state, prefix=low)
    assert "--max-conns + --max-follows" in startup_refusal(proc)
    assert "2000" in proc.stderr


# --- a running server and its signals -----------------------------------------------------------


@pytest.fixture
def server(certs: Path, tmp_path: Path) -> Iterator[Tjobs]:
    r = Tjobs(certs, tmp_path / "state")
    try:
        yield r
    finally:
        r.close()


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_streams_and_exits_cleanly(server: Tjobs, sig: signal.Signals) -> None:
    line = server.expect("listen on")
    assert f"127.0.0.1:{server.port}" in line and "cgroup v" in line and "defaults cpu 20%" in line
    stub = server.stub()
    st = stub.Run(pb.RunRequest(argv=["sh", "-c", "echo up; exec sleep 300"]), timeout=HANG)
    server.expect(f"run alice {st.id[:8]}")
    follower = stub.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG)
    assert next(follower).data == b"up\n"

    server.proc.send_signal(sig)
    with pytest.raises(grpc.RpcError) as info:
        next(follower)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert server.proc.wait(HANG) == 0
    server.expect("stopped")
    assert not any("Traceback" in line for line in server.log)
    server.channel.close()


@needs_root
def test_running_server_refuses_and_logs(server: Tjobs) -> None:
    server.expect("listen on")
    err = None
    try:
        server.stub("other").Status(pb.JobRef(id="0" * 32), timeout=HANG)
    except grpc.RpcError as e:
        err = e
    assert err is not None and err.details() == "unauthorized"
    server.expect("refused status from bob: NOT_FOUND unauthorized")
    server.channel.close()
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(HANG) == 0


@needs_root
@pytest.mark.parametrize(("flags", "durable"), [([], True), (["--no-fsync"], False)])
def test_no_fsync_gives_an_engine_that_answers_without_the_disk(
    tmp_path: Path, flags: list[str], durable: bool
) -> None:
    from tjob.cli import service, startup

    parser = build_parser()
    service.add_flags(parser)
    args = parser.parse_args(["--state-dir", str(tmp_path / "state"), *flags])
    engine = startup.engine(args, startup.policy(args))
    try:
        assert engine.durable is durable
        assert engine.start(JobSpec(["true"])).wait(HANG).exit_code == 0
    finally:
        engine.close()
