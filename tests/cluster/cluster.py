"""A real Ray cluster on this machine for the cluster tests and benches: a private network
namespace with only ``lo`` up (Ray binds and advertises 127.0.0.1, nothing leaves loopback), a
Ray head, node agents (``tjobs node``, each with its own state dir and cgroup parent) and a
gateway (``tjobs gateway``), all started here; the CLI runs in the same namespace. Readiness is
always a line a process writes or a state the gateway reports, never a sleep."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from support.timeouts import PROCESS_HANG

BIN = Path(sys.executable).parent
RAY_PORT = 6379
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_memory_monitor_refresh_ms": "0",  # no OOM killer of Ray's: the nodes' cgroups limit
    # A dead node is noticed in a few seconds (the default is ~30 s of missed checks).
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    # A raylet has 30 s to register by default: two starting at once on a loaded 2-core machine
    # missed it now and then (the node's `ray start` then failed, and the node with it).
    "RAY_raylet_start_wait_time_s": "120",
}
STARTUP = 120.0  # seconds: Ray's head takes ~15 s on a quiet 2-core machine, more under load


class Proc:
    """A child in its own session (so its whole process group can be killed), its output
    pumped to a file and, line by line, to a queue."""

    def __init__(self, name: str, argv: list[str], logs: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []  # the lines waited through so far
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a") as f:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                f.write(line)
                f.flush()
                self.lines.put(line)
        self.lines.put("")

    def wait_line(self, text: str, timeout: float = STARTUP, after: int = 0) -> str:
        """The first line holding ``text`` among those written after the first ``after``."""
        end = time.monotonic() + timeout
        i = after
        while True:
            while i < len(self.seen):
                if text in self.seen[i]:
                    return self.seen[i]
                if self.seen[i] == "":
                    tail = self.log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{self.name} ended before {text!r}; log:\n{tail}")
                i += 1
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, end - time.monotonic())))
            except queue.Empty:
                tail = self.log.read_text(errors="replace")[-3000:]  # for a failure in CI
                raise AssertionError(
                    f"{self.name}: no {text!r} in {timeout}s; log:\n{tail}"
                ) from None

    def kill(self) -> None:
        """SIGKILL to its whole process group (a node: its agent, its Ray, Ray's processes)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(PROCESS_HANG)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(PROCESS_HANG)
            except subprocess.TimeoutExpired:
                self.kill()


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.netns = f"tjc-{uuid.uuid4().hex[:8]}"
        self.ns = ["nsenter", f"--net=/run/netns/{self.netns}"]
        # Ray's socket paths must stay short (sun_path): its own short temp dir.
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="tjc", dir="/tmp"))
        self.logs = root / "logs"
        self.logs.mkdir()
        self.certs = root / "home" / ".tjob"
        self.procs: dict[str, Proc] = {}
        self.env = {**os.environ, **RAY_ENV}
        self.gateway_port = 7000
        self.cgroups: list[str] = []
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run([*self.ns, "ip", "link", "set", "lo", "up"], check=True)
        self._certs()

    def _certs(self) -> None:
        certs = [sys.executable, "-m", "tjob.cli.certs", "--dir", str(self.certs)]
        subprocess.run(certs, check=True, capture_output=True, timeout=PROCESS_HANG)
        subprocess.run(
            [*certs, "--client", "tjob-gateway"],
            check=True,
            capture_output=True,
            timeout=PROCESS_HANG,
        )

    def spawn(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, [*self.ns, *argv], self.logs, self.env)
        self.procs[name] = proc
        return proc

    def head(self) -> None:
        self.spawn(
            "head",
            [
                str(BIN / "ray"),
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={RAY_PORT}",
                "--num-cpus=0",
                "--include-dashboard=false",
                "--object-store-memory=80000000",
                f"--temp-dir={self.ray_tmp}",
                "--disable-usage-stats",
            ],
        )
        self.procs["head"].wait_line("Ray runtime started")

    def _tls(self) -> list[str]:
        c = self.certs
        return [
            "--ca",
            str(c / "ca.crt"),
            "--cert",
            str(c / "svc.crt"),
            "--key",
            str(c / "svc.key"),
        ]

    def node(
        self, name: str, port: int, *, cpus: float, memory_mb: int, fresh: bool = True
    ) -> Proc:
        """``tjobs node NAME``; its state dir survives a kill, so a restart finds its jobs."""
        cg = f"tjob-test-{self.netns}-{name}"
        if cg not in self.cgroups:
            self.cgroups.append(cg)
        proc = self.spawn(
            f"node-{name}",
            [
                sys.executable,
                "-m",
                "tjob.cli.tjobs",
                "node",
                f"--ray=127.0.0.1:{RAY_PORT}",
                f"--name={name}",
                f"--host=127.0.0.1:{port}",
                f"--state-dir={self.root / ('state-' + name)}",
                f"--cgroup-parent={cg}",
                f"--num-cpus={cpus:g}",
                f"--memory={memory_mb << 20}",
                "--ray-arg=--node-ip-address=127.0.0.1",
                "--ray-arg=--object-store-memory=80000000",
                f"--max-mem={memory_mb}",
                "--max-jobs=1000",
                *self._tls(),
            ],
        )
        proc.wait_line("listen on")
        proc.wait_line("Ray runtime started")  # one raylet starting at a time
        return proc

    def gateway(self, *extra: str) -> Proc:
        c = self.certs
        proc = self.spawn(
            "gateway",
            [
                sys.executable,
                "-m",
                "tjob.cli.tjobs",
                "gateway",
                f"--ray=127.0.0.1:{RAY_PORT}",
                f"--host=127.0.0.1:{self.gateway_port}",
                f"--state-dir={self.root / 'gateway'}",
                "--admin=admin",
                f"--node-cert={c / 'tjob-gateway.crt'}",
                "--max-jobs=1000",
                *self._tls(),
                *extra,
            ],
        )
        proc.wait_line("gateway listening")
        return proc

    def wait_nodes(self, *names: str, after: int = 0) -> None:
        """Until the gateway has logged each node joining (after its first ``after`` lines)."""
        for name in names:
            self.procs["gateway"].wait_line(f"node {name} joined", after=after)

    def tjob(
        self, *args: str, cert: str = "cli", timeout: float = PROCESS_HANG, port: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        c = self.certs
        argv = [
            *self.ns,
            str(BIN / "tjob"),
            "--host",
            f"127.0.0.1:{port or self.gateway_port}",
            "--ca",
            str(c / "ca.crt"),
            "--cert",
            str(c / f"{cert}.crt"),
            "--key",
            str(c / f"{cert}.key"),
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TJOB_")}
        env["XDG_CONFIG_HOME"] = str(self.root / "config")
        return subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=timeout, env=env
        )

    def ok(self, *args: str, cert: str = "cli") -> str:
        proc = self.tjob(*args, cert=cert)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def ps(self, cert: str = "cli") -> list[dict[str, object]]:
        out: list[dict[str, object]] = json.loads(self.ok("ps", "--json", cert=cert))
        return out

    def until(self, what: Callable[[], bool], timeout: float, why: str) -> None:
        """Poll the gateway (a state it reports) until ``what`` holds."""
        end = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < end, why

    def close(self) -> None:
        for name in [n for n in self.procs if n.startswith("node-")]:
            self.procs[name].stop()
        for name in ("gateway", "head"):
            if name in self.procs:
                self.procs[name].stop()
        for proc in self.procs.values():
            proc.kill()  # Ray's leftovers in each group
        subprocess.run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
