"""tjobs as a service: JSON logs, sd_notify, SIGHUP reload, the unit, delegated cgroups."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from apiharness import HANG, needs_root, open_gate
from support.tjobs import TJOBS, Tjobs
from test_api_tjobs import cert_flags  # noqa: F401

from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.cgroups import delegate, scope
from tjob.cli import install, logfmt, service
from tjob.errors import CgroupError

# --- log lines ----------------------------------------------------------------------------------


def test_json_lines_carry_time_level_message_and_fields() -> None:
    out = io.StringIO()
    logger = logging.getLogger("tjobs.test-json")
    handler = logging.StreamHandler(out)
    handler.setFormatter(logfmt.JsonFormatter())
    logger.addHandler(handler)
    try:
        logger.warning("run %s %s", "alice", "1234abcd", extra={"job": "1234abcd"})
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # one object per line, even with a multi-line traceback
    first, second = map(json.loads, lines)
    assert first["message"] == "run alice 1234abcd" and first["level"] == "warning"
    assert first["job"] == "1234abcd" and first["logger"] == "tjobs.test-json"
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert "ValueError: boom" in second["exception"]


# --- sd_notify ----------------------------------------------------------------------------------


def test_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service.notify("READY=1") is False  # not under a service manager: nothing to do
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        assert service.notify("READY=1\nSTATUS=ok")
        assert s.recv(100) == b"READY=1\nSTATUS=ok"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        name = f"tjob-test-{os.getpid()}"
        s.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)  # an abstract address
        assert service.notify("STOPPING=1")
        assert s.recv(100) == b"STOPPING=1"


# --- the unit -----------------------------------------------------------------------------------


def test_install_service_writes_unit_and_sample_config(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "tjob.cli.tjobs", "install-service", "--prefix", str(tmp_path)]
    proc = subprocess.run(
        [*run, "--systemd-version", "252"],
        check=False,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode == 0, proc.stderr
    assert "systemctl daemon-reload" in proc.stdout
    unit = (tmp_path / "etc/systemd/system/tjobs.service").read_text().splitlines()
    for line in ("Type=notify", "KillMode=process", "Delegate=yes", "Restart=on-failure"):
        assert line in unit
    start = next(line for line in unit if line.startswith("ExecStart="))
    exe = start.split()[0].removeprefix("ExecStart=")
    assert Path(exe).is_absolute() and os.access(exe, os.X_OK)
    assert start.endswith("--config /etc/tjob/tjobs.toml")
    assert "DelegateSubgroup=supervisor" not in unit  # systemd 252 does not know it
    sample = tmp_path / "etc/tjob/tjobs.toml"
    check = subprocess.run(
        [*TJOBS, "config", "check", "--config", str(sample)],
        check=False,
        capture_output=True,
        timeout=HANG,
    )
    assert check.returncode == 0, check.stderr
    # A config that is there is kept; a newer systemd gets the subgroup.
    sample.write_text("cpu = 5\n")
    subprocess.run(
        [*run, "--systemd-version", "255"], check=True, timeout=HANG, capture_output=True
    )
    assert sample.read_text() == "cpu = 5\n"
    assert "DelegateSubgroup=supervisor" in install.render_unit("/x/tjobs", "/c.toml", 255)


# --- delegated cgroups --------------------------------------------------------------------------


def fake_tree(tmp_path: Path, own: str, delegated: str | None) -> tuple[Path, str]:
    root = tmp_path / "cgroup"
    (root / own.lstrip("/")).mkdir(parents=True)
    if delegated is not None:
        os.setxattr(root / delegated.lstrip("/"), "trusted.delegate", b"1")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"0::{own}\n")
    return root, str(proc)


@needs_root  # trusted.* attributes need CAP_SYS_ADMIN, as systemd's do
def test_delegated_service_moves_into_its_leaf(tmp_path: Path) -> None:
    unit = "/system.slice/tjobs.service"
    root, proc = fake_tree(tmp_path, unit, unit)
    leaf = root / unit.lstrip("/") / "supervisor"
    leaf.mkdir()
    (leaf / "cgroup.procs").write_text("")  # the kernel makes it; a fake tree needs it made
    # Started in the unit's cgroup itself (systemd < 254) and told to stay in the unit.
    placement = delegate.place(root, "delegated", proc)
    assert placement.parent == "system.slice/tjobs.service/jobs"
    assert (leaf / "cgroup.procs").read_text() == "0"  # "0": the writing process moved itself
    assert placement.note is not None and "systemd < 254" in placement.note
    assert placement.home is None  # it stays in the leaf


@needs_root
def test_delegate_subgroup_leaf_is_recognised(tmp_path: Path) -> None:
    unit = "/system.slice/tjobs.service"
    root, proc = fake_tree(tmp_path, unit + "/supervisor", unit)
    (root / unit.lstrip("/") / "supervisor" / "cgroup.procs").write_text("")
    # systemd 254+ started it in the leaf: auto keeps jobs under the unit, nothing to note.
    placement = delegate.place(root, "auto", proc)
    assert placement.parent == "system.slice/tjobs.service/jobs"
    assert placement.note is None and placement.home is None


@needs_root
def test_not_delegated_keeps_the_root_parent(tmp_path: Path) -> None:
    root, proc = fake_tree(tmp_path, "/user.slice/session-1.scope", None)
    assert delegate.place(root, "auto", proc).parent == "tjob"
    for setting in ("delegated", "scope"):
        with pytest.raises(CgroupError, match="not in a cgroup v2 subtree delegated"):
            delegate.place(root, setting, proc)
    assert delegate.place(root, "/custom/parent/", proc).parent == "custom/parent"
    # A v1 or hybrid host (several hierarchies listed) is never placed by the v2 tree.
    Path(proc).write_text("12:memory:/x\n0::/system.slice/tjobs.service\n")
    assert delegate.own_cgroup(proc) is None


def test_scope_is_named_after_the_unit() -> None:
    assert scope.scope_name(Path("/sys/fs/cgroup/system.slice/tjobs.service")) == (
        "tjobs-jobs.scope"
    )


# --- a running tjobs: readiness, reload, JSON logs ----------------------------------------------


@needs_root
def test_running_tjobs_notifies_reloads_and_logs_json(
    certs: Path, tmp_path: Path, gate: Path
) -> None:
    conf = tmp_path / "tjobs.toml"
    conf.write_text('log-format = "json"\nmax-jobs = 3\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(HANG)
    os.environ["NOTIFY_SOCKET"] = str(tmp_path / "notify")
    try:
        server = Tjobs(certs, tmp_path / "state", "--config", str(conf))
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        listen = json.loads(server.expect('"listen on'))
        assert listen["level"] == "info" and "max 3 running jobs" in listen["message"]
        assert notify.recv(200).startswith(b"READY=1\nSTATUS=listening on 127.0.0.1:")
        stub = server.stub()
        job = stub.Run(
            pb.RunRequest(argv=["sh", "-c", f"echo up; cat {gate}; echo down"]), timeout=HANG
        )
        follower = stub.Logs(pb.LogsRequest(id=job.id, follow=True), timeout=HANG)
        assert next(follower).data == b"up\n"
        conf.write_text('log-format = "plain"\nmax-jobs = 4\n')
        server.proc.send_signal(signal.SIGHUP)
        assert notify.recv(200) == b"RELOADING=1"
        changed = json.loads(server.expect("config max-jobs"))
        assert changed["message"] == "config max-jobs: 3 -> 4 (needs a restart)"
        assert changed["key"] == "max-jobs" and changed["live"] is False
        # log-format is applied live: the lines after the reload are plain text.
        line = server.expect("reloaded: 2 changed, 1 need a restart")
        assert not line.startswith("{")
        assert notify.recv(200) == b"READY=1"
        open_gate(gate)  # the stream opened before the reload goes on after it
        assert b"".join(c.data for c in follower) == b"down\n"
        server.channel.close()
        server.proc.send_signal(signal.SIGTERM)
        assert notify.recv(200) == b"STOPPING=1"
        assert server.proc.wait(HANG) == 0
    finally:
        notify.close()
        server.close()
