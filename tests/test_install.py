"""Installing tjob as a package: a wheel built from a clean copy of HEAD (``git archive``, so
nothing of the working tree's builds or edits leaks in), installed with its dependencies into a
fresh venv outside the source tree, gives working ``tjob`` and ``tjobs`` commands and a package
whose ``tjob-shim`` was built by the wheel build and starts real jobs.

The wheel is built the way ``pip install .`` builds it (an isolated build environment from
pyproject's build-system); packages come from pip's cache when they are there. The venv is made
without pip and filled by this venv's pip (``pip --python``): seconds less, the same result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from apiharness import needs_root
from support.timeouts import PROCESS_HANG as HANG

ROOT = Path(__file__).resolve().parents[1]
BUILD = 600.0  # seconds: the wheel build and install may download; a guard against a hang


@dataclass
class Installed:
    venv: Path
    wheel: Path
    src: Path  # the clean copy of HEAD the wheel was built from
    work: Path  # an empty directory outside the source tree, to run the commands from

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TJOB_", "PYTHON"))}
        env["XDG_CONFIG_HOME"] = str(self.work / "xdg")
        return subprocess.run(
            [str(self.venv / "bin" / argv[0]), *argv[1:]],
            cwd=self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG,
            check=check,
        )


def _sh(*argv: str | Path, cwd: Path | None = None) -> None:
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD,
        check=False,
    )
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to archive")
    tmp = tmp_path_factory.mktemp("install")
    assert ROOT not in tmp.parents
    archive, src = tmp / "head.tar", tmp / "src"
    _sh("git", "-C", ROOT, "archive", "--format=tar", "-o", archive, "HEAD")
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    _sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "wheels", src)
    (wheel,) = (tmp / "wheels").glob("tjob-*.whl")
    venv = tmp / "venv"
    _sh(sys.executable, "-m", "venv", "--without-pip", venv)
    _sh(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", wheel)
    work = tmp / "work"
    work.mkdir()
    yield Installed(venv, wheel, src, work)


def test_the_commands_work(installed: Installed) -> None:
    from importlib import metadata

    version = installed.run("tjob", "--version", check=False)
    assert version.stdout == f"Client: tjob {metadata.version('tjob')}\n"
    assert version.stderr.startswith("tjob: cannot read CA certificate .tjob/ca.crt")
    assert installed.run("tjobs", "--help").stdout.startswith("usage: tjobs")
    installed.run("tjobs", "certs")
    names = sorted(p.name for p in (installed.work / ".tjob").iterdir())
    assert {"ca.crt", "svc.crt", "svc.key", "cli.crt", "cli.key"} <= set(names)


def test_the_package_is_the_installed_one_with_its_shim(installed: Installed) -> None:
    probe = textwrap.dedent(
        """
        import os, tjob, tjob.launcher
        print(tjob.__file__)
        print(os.access(tjob.launcher.SHIM, os.X_OK), tjob.launcher.SHIM)
        """
    )
    lines = installed.run("python", "-c", probe).stdout.splitlines()
    site = installed.venv / "lib"
    assert Path(lines[0]).is_relative_to(site)
    executable, shim = lines[1].split(" ", 1)
    assert executable == "True"
    assert Path(shim).is_relative_to(site)
    assert Path(shim).read_bytes()[:4] == b"\x7fELF"  # a program, compiled by the wheel build


def test_pipx_install(installed: Installed, tmp_path: Path) -> None:
    """``pipx install`` of the same source tree, when pipx is here (it is not a dependency)."""
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.skip("pipx is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPX_")}
    env |= {f"PIPX_{d.upper()}": str(tmp_path / d) for d in ("home", "bin_dir", "man_dir")}
    proc = subprocess.run(
        [pipx, "install", str(installed.src)],
        env=env,
        capture_output=True,
        timeout=BUILD,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    for command in ("tjob", "tjobs"):
        run = subprocess.run(
            [str(tmp_path / "bin_dir" / command), "--help"],
            capture_output=True,
            timeout=HANG,
            check=False,
        )
        assert run.returncode == 0, run.stderr.decode()


@needs_root
def test_the_installed_engine_runs_a_job(installed: Installed, cgroup_parent: str) -> None:
    probe = textwrap.dedent(
        """
        import sys, tjob
        with tjob.Engine(sys.argv[1], cgroup_parent=sys.argv[2]) as engine:
            status = engine.start(tjob.JobSpec(["/bin/true"])).wait(30)
        print(status.state.value, status.exit_code)
        """
    )
    state = installed.work / "state"
    out = installed.run("python", "-c", probe, str(state), cgroup_parent).stdout
    assert out == "exited 0\n"
