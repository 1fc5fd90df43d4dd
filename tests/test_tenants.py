"""One uid per client (tjob.tenants): the range, its check against the host's accounts, the
allocation kept in the state database, and jobs run as their owner's uid."""

from __future__ import annotations

import os
import pwd
import random
from pathlib import Path

import pytest

from tjob import Engine, JobSpec
from tjob.cgroups.clients import client_dir, job_cgroup
from tjob.errors import InvalidSpec
from tjob.store import Store
from tjob.tenants import Tenants, check_free, parse_range, synthetic_name


def free_range(size: int = 16) -> tuple[int, int]:
    """A range of systemd's dynamic one, random so runs in parallel do not share uids."""
    first = 61184 + random.randrange(0, (65519 - 61184) // size) * size
    return first, first + size - 1


def test_range_is_parsed_and_bad_ones_are_refused() -> None:
    assert parse_range("61184-65519") == (61184, 65519)
    for bad in ("61184", "a-b", "10-5", "0-10", "-5-10", "1-4294967295"):
        with pytest.raises(InvalidSpec):
            parse_range(bad)


def test_range_with_an_account_in_it_is_refused_naming_it() -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    with pytest.raises(InvalidSpec, match=rf"overlaps existing accounts: user nobody \({nobody}\)"):
        check_free(nobody - 5, nobody + 5)
    check_free(*free_range())  # a free one passes


def test_uids_are_allocated_once_in_order_and_kept(tmp_path: Path) -> None:
    first, last = 61184, 61186
    store = Store(tmp_path / "jobs.db")
    assert [store.client_uid(o, first, last) for o in ("a", "b", "a", "c")] == [
        61184,
        61185,
        61184,
        61186,
    ]
    assert store.client_uid("d", first, last) is None  # used up
    store.close()
    again = Store(tmp_path / "jobs.db")  # a restart
    assert again.client_uid("c", first, last) == 61186
    assert again.client_uid("b", 61185, 61190) == 61185
    assert again.client_uid("e", 61185, 61190) == 61187  # past the taken ones
    with pytest.raises(InvalidSpec, match=r"leaves out uids already given.*61184-61187"):
        Tenants(61185, 61190, again.client_uid, again.client_uid_span())
    tenants = Tenants(*free_range(1), lambda o, f, la: None)
    with pytest.raises(InvalidSpec, match=r"no uid left for a new client.*--uid-range"):
        tenants.uid("x")
    again.close()


def test_an_old_database_gains_the_table(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "jobs.db")
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at REAL "
        "NOT NULL, spec TEXT NOT NULL, status TEXT, ended_at REAL)"
    )
    db.commit()
    db.close()
    store = Store(tmp_path / "jobs.db")
    assert store.client_uid("alice", 61184, 61190) == 61184
    store.close()


def test_client_cgroup_names_are_safe_and_distinct() -> None:
    names = {client_dir(o) for o in ("alice", "al/ice", "al\\ice", "..", "", "a" * 500, "al ice")}
    assert len(names) == 7
    for n in names:
        assert n.startswith("c-") and "/" not in n and n not in (".", "..") and len(n) < 80
    assert client_dir("alice").startswith("c-alice-")
    assert job_cgroup("alice", "ab" * 16) == f"{client_dir('alice')}/{'ab' * 16}"


@pytest.mark.root
@pytest.mark.cgroup2
def test_each_owner_runs_as_its_own_uid_across_restarts(tmp_path: Path, cgroup_parent: str) -> None:
    first, last = free_range()
    script = 'id -u; id -g; id -G; echo "$USER $LOGNAME $HOME"'

    def ids(engine: Engine, owner: str) -> list[str]:
        job = engine.start(JobSpec(["sh", "-c", script], owner=owner))
        assert job.wait(30).exit_code == 0
        return b"".join(c.data for c in job.output()).decode().splitlines()

    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, uid_range=(first, last)) as eng:
        alice, bob = ids(eng, "alice"), ids(eng, "bob")
        mine = eng.start(JobSpec(["id", "-u"], owner="me", user=os.getuid()))  # asked: as asked
        assert mine.wait(30).exit_code == 0
        assert b"".join(c.data for c in mine.output()) == f"{os.getuid()}\n".encode()
    uid = int(alice[0])
    assert first <= uid <= last and alice[:3] == [str(uid)] * 3  # gid = uid, no other group
    assert alice[3] == f"{synthetic_name(uid)} {synthetic_name(uid)} /"
    assert int(bob[0]) != uid and first <= int(bob[0]) <= last
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, uid_range=(first, last)) as eng:
        assert ids(eng, "alice")[0] == str(uid)  # stable across restarts


@pytest.mark.root
@pytest.mark.cgroup2
def test_nproc_is_the_client_pids_ceiling_only_with_per_client_uids(
    tmp_path: Path, cgroup_parent: str
) -> None:
    from tjob.cgroups import ClientLimits

    def nproc(**kw: object) -> str:
        with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, **kw) as eng:  # type: ignore[arg-type]
            job = eng.start(JobSpec(["cat", "/proc/self/limits"], owner="alice"))
            assert job.wait(30).exit_code == 0
            text = b"".join(c.data for c in job.output()).decode()
        line = next(x for x in text.splitlines() if x.startswith("Max processes"))
        return " ".join(line.split()[2:4])

    clients = ClientLimits(pids=77)
    assert nproc(clients=clients, uid_range=free_range()) == "77 77"
    inherited = nproc(clients=clients)  # the engine's own user: not the client's ceiling
    assert inherited != "77 77"


@pytest.mark.root
def test_an_engine_refused_for_its_uid_range_leaves_the_state_dir_free(
    tmp_path: Path, cgroup_parent: str
) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    with pytest.raises(InvalidSpec, match="overlaps existing accounts"):
        Engine(tmp_path / "s", cgroup_parent=cgroup_parent, uid_range=(nobody - 5, nobody + 5))
    Engine(tmp_path / "s", cgroup_parent=cgroup_parent).close()  # no lock left behind
