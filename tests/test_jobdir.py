"""A job's directory: files made once, exec.bin as the protocol says, JSON written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tjob.jobdir import (
    RESERVE_FILE,
    create_file,
    exec_blob,
    read_final,
    reserve,
    write_final,
    write_json,
)
from tjob.protocol import ExecJob, decode_exec


def test_create_file_makes_a_private_file_once(tmp_path: Path) -> None:
    create_file(tmp_path / "spec.json", b"{}")
    assert (tmp_path / "spec.json").read_bytes() == b"{}"
    assert (tmp_path / "spec.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        create_file(tmp_path / "spec.json", b"again")


def test_exec_blob_is_the_protocols_exec_job() -> None:
    blob = exec_blob("host", "/w", (65534, 65534), ["cpu/x/tasks"], ["sh", "-c", "a b"], {"A": "1"})
    assert decode_exec(blob) == ExecJob(
        b"host", b"/w", (65534, 65534), (b"cpu/x/tasks",), (b"sh", b"-c", b"a b"), (b"A=1",)
    )
    assert decode_exec(exec_blob("h", "/", None, [], ["x"], {})).ids is None


def test_exec_blob_keeps_odd_bytes_of_arguments() -> None:
    odd = "caf\udce9"  # a byte that is not UTF-8, as os.fsdecode gives it
    assert b"caf\xe9\0" in exec_blob("h", "/", None, [], [odd], {})


def test_write_final_becomes_the_reserve_and_frees_no_inode(tmp_path: Path) -> None:
    reserve(tmp_path, 64 << 10)
    kept = (tmp_path / RESERVE_FILE).stat()
    assert kept.st_size == 0 and kept.st_blocks * 512 >= 64 << 10  # kept past its end
    write_final(tmp_path / "status.json", {"a": 1})
    st = (tmp_path / "status.json").stat()
    assert st.st_ino == kept.st_ino  # the reserve, renamed
    assert st.st_blocks * 512 < 64 << 10  # what the status does not use, given back
    assert json.loads((tmp_path / "status.json").read_text()) == {"a": 1}
    write_final(tmp_path / "status.json", {"a": 2})  # no reserve left: a temporary, renamed
    assert json.loads((tmp_path / "status.json").read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no .tmp, no reserve


def test_write_final_into_a_reserve_kept_as_zeros_cuts_them(tmp_path: Path) -> None:
    (tmp_path / RESERVE_FILE).write_bytes(b"\0" * 16384)  # an earlier release's reserve
    write_final(tmp_path / "status.json", {"a": 1})
    assert json.loads((tmp_path / "status.json").read_text()) == {"a": 1}


def test_write_final_is_in_place_before_it_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter for the end does not wait on the disk: the status is renamed into place, then
    the file and its directory are fsynced (here; by the supervisor for the launcher's)."""
    reserve(tmp_path, 64 << 10)
    synced: list[tuple[str, bool]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), (tmp_path / "status.json").exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_final(tmp_path / "status.json", {"a": 1})
    assert synced == [(f"{tmp_path}/status.json", True), (str(tmp_path), True)]
    synced.clear()
    write_final(tmp_path / "status.json", {"a": 2}, finish=False)
    assert synced == [] and json.loads((tmp_path / "status.json").read_text()) == {"a": 2}


@pytest.mark.parametrize("content", [b"", b"\0" * 700, b'{"a": 1}' + b"\0" * 100], ids=repr)
def test_a_status_that_never_reached_the_disk_reads_as_none(tmp_path: Path, content: bytes) -> None:
    """What a power cut between the rename and the fsync may leave: no end, not damage."""
    (tmp_path / "status.json").write_bytes(content)
    assert read_final(tmp_path / "status.json") is None
    assert read_final(tmp_path / "absent.json") is None
    (tmp_path / "status.json").write_bytes(b"{garbled")
    assert read_final(tmp_path / "status.json") == b"{garbled"  # damage: the caller's to say


def test_write_json_replaces_atomically_and_keeps_the_reserve(tmp_path: Path) -> None:
    (tmp_path / RESERVE_FILE).write_bytes(b"\0" * 16384)
    write_json(tmp_path / "spec.json", {"a": 1})
    write_json(tmp_path / "spec.json", {"a": 2})
    assert json.loads((tmp_path / "spec.json").read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESERVE_FILE, "spec.json"]
