"""The job lifecycle in the library (issue 15): caps apart from defaults, timeouts (also one
that passes while no engine runs), signals, names and labels."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tjob
from tjob import Engine, InvalidSpec, JobSpec, JobState, Limits
from tjob.errors import JobFinished, NameInUse
from tjob.naming import check_labels, check_name, parse_label, parse_signal

pytestmark = pytest.mark.root


# ------------------------------------------------------------------ pure validation


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "must not be empty"),
        ("-x", "not valid"),
        ("a b", "not valid"),
        ("a\x1b", "not valid"),
        ("x" * 129, "longer than 128"),
    ],
)
def test_bad_names_are_refused_naming_the_part(name: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        check_name(name)


def test_good_names_and_labels() -> None:
    assert check_name("nightly-build.v2_1") == "nightly-build.v2_1"
    assert parse_label("team=ml") == ("team", "ml")
    assert parse_label("k=") == ("k", "")
    assert parse_label("a/b=c=d") == ("a/b", "c=d")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("team", "not KEY=VALUE"),
        ("=x", "label key"),
        ("k=a\nb", "control characters"),
        ("k=" + "v" * 257, "longer than 256"),
        ("k" * 64 + "=v", "label key"),
    ],
)
def test_bad_labels_are_refused(text: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        parse_label(text)


def test_too_many_labels_are_refused() -> None:
    with pytest.raises(InvalidSpec, match="at most 32"):
        check_labels({f"k{i}": "v" for i in range(33)})


def test_signals_by_name_or_number() -> None:
    assert parse_signal("KILL") is signal.SIGKILL
    assert parse_signal("sigterm") is signal.SIGTERM
    assert parse_signal("10") is signal.SIGUSR1
    for bad in ("NOPE", "999", "-1"):
        with pytest.raises(InvalidSpec, match="signal"):
            parse_signal(bad)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5"])
def test_bad_timeouts_are_refused(timeout: object) -> None:
    with pytest.raises(InvalidSpec, match="timeout"):
        JobSpec(["true"], timeout=timeout).validate()  # type: ignore[arg-type]


# ------------------------------------------------------------------ caps


def test_caps_are_apart_from_defaults(tmp_path: Path, cgroup_parent: str) -> None:
    caps = Limits(memory_mb=64)
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, caps=caps) as eng:
        assert eng.start(JobSpec(["true"], limits=Limits(memory_mb=64))).wait(30).exit_code == 0
        with pytest.raises(InvalidSpec, match="memory_mb 65 is above the server's cap of 64"):
            eng.start(JobSpec(["true"], limits=Limits(memory_mb=65)))
        # The default (20 MB) is not the cap.
        assert eng.start(JobSpec(["true"])).wait(30).limits.memory_mb == 20


# ------------------------------------------------------------------ timeouts


def test_timeout_stops_the_job_and_says_so(engine: Engine) -> None:
    t0 = time.monotonic()
    st = engine.start(JobSpec(["sleep", "60"], timeout=0.5)).wait(30)
    assert time.monotonic() - t0 < 20
    assert (st.state, st.timed_out, st.stopped, st.timeout) == (JobState.STOPPED, True, True, 0.5)
    assert st.signal == signal.SIGTERM  # stopped as stop does: SIGTERM first


def test_a_job_that_ends_first_is_not_timed_out(engine: Engine) -> None:
    st = engine.start(JobSpec(["true"], timeout=30)).wait(30)
    assert (st.state, st.timed_out, st.exit_code) == (JobState.EXITED, False, 0)
    st = engine.start(JobSpec(["sleep", "60"])).stop(0)
    assert (st.stopped, st.timed_out) == (True, False)


def test_timeout_holds_while_no_engine_runs(tmp_path: Path, cgroup_parent: str) -> None:
    """The deadline passes while the engine's process is dead; the next engine stops it."""
    state = tmp_path / "state"
    holder = textwrap.dedent(
        """
        import sys, tjob
        eng = tjob.Engine(sys.argv[1], cgroup_parent=sys.argv[2])
        job = eng.start(tjob.JobSpec(["sleep", "120"], timeout=1.0))
        print(job.id, flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(state), cgroup_parent],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    job_id = proc.stdout.readline().strip()
    proc.kill()
    proc.wait()
    time.sleep(1.5)  # the deadline passes while no engine runs (the point of the test)
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        st = eng.get(job_id).wait(30)
        assert (st.state, st.timed_out) == (JobState.STOPPED, True)
        assert st.ended_at is not None and st.started_at is not None
        assert st.ended_at - st.started_at < 60


def test_default_timeout_of_the_engine(tmp_path: Path, cgroup_parent: str) -> None:
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, default_timeout=0.3) as eng:
        st = eng.start(JobSpec(["sleep", "60"])).wait(30)
        assert (st.timed_out, st.timeout) == (True, 0.3)


# ------------------------------------------------------------------ signals


def ready(job: tjob.Job) -> None:
    """Until the job has printed ``ready`` (its traps set, its children forked)."""
    seen = b""
    for chunk in job.output(follow=True):
        seen += chunk.data
        if b"ready" in seen:
            return
    raise AssertionError(f"the job ended without saying ready: {seen!r}")


def test_signal_goes_to_the_command_without_a_stop(engine: Engine) -> None:
    script = "trap 'echo got-usr1; exit 7' USR1; echo ready; sleep 60 & wait"
    job = engine.start(JobSpec(["sh", "-c", script]))
    ready(job)
    assert job.signal(signal.SIGUSR1) == 1
    st = job.wait(30)
    assert (st.state, st.exit_code, st.stopped) == (JobState.EXITED, 7, False)
    assert b"got-usr1" in b"".join(c.data for c in job.output())
    with pytest.raises(JobFinished):
        job.signal(signal.SIGTERM)


def test_sigkill_by_default_kind_and_all(engine: Engine) -> None:
    job = engine.start(JobSpec(["sleep", "60"]))
    job.signal(signal.SIGKILL)
    st = job.wait(30)
    assert (st.state, st.signal, st.stopped) == (JobState.EXITED, 9, False)
    job = engine.start(JobSpec(["sh", "-c", "sleep 60 & sleep 60 & echo ready; wait"]))
    ready(job)
    # A signal that kills the command (sh) would end its PID namespace, and with it the sleeps
    # still to be signalled: SIGCONT reaches all three whatever the order, then SIGKILL ends them.
    assert job.signal(signal.SIGCONT, all=True) >= 3
    assert job.signal(signal.SIGKILL, all=True) >= 1
    assert job.wait(30).state is JobState.EXITED


# ------------------------------------------------------------------ names and labels


def test_names_are_unique_per_owner_until_removed(engine: Engine) -> None:
    a = engine.start(JobSpec(["true"], owner="alice", name="build", labels={"team": "ml"}))
    a.wait(30)
    with pytest.raises(NameInUse, match=f"in use by job {a.short_id}"):
        engine.start(JobSpec(["true"], owner="alice", name="build"))
    b = engine.start(JobSpec(["true"], owner="bob", name="build"))  # another owner's
    assert engine.find("alice", "build") is a and engine.find("bob", "build") is b
    st = a.status()
    assert (st.name, dict(st.labels)) == ("build", {"team": "ml"})
    engine.remove(a.id)
    assert engine.find("alice", "build") is None
    engine.start(JobSpec(["true"], owner="alice", name="build")).wait(30)


def test_names_and_labels_survive_a_restart(tmp_path: Path, cgroup_parent: str) -> None:
    state = tmp_path / "s"
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        job = eng.start(JobSpec(["true"], name="n1", labels={"a": "b"}, timeout=5))
        job.wait(30)
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        again = eng.find("", "n1")
        assert again is not None and again.id == job.id
        st = again.status()
        assert (st.name, dict(st.labels), st.timeout) == ("n1", {"a": "b"}, 5)
        with pytest.raises(NameInUse):
            eng.start(JobSpec(["true"], name="n1"))


def test_library_exports() -> None:
    assert tjob.JobSpec(["x"], name="a").name == "a"
