"""The committed generated gRPC code is what the proto generates now (never hand-edited)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tjob.api import gen


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    fresh = gen.generate(tmp_path)
    committed_dir = gen.SRC_ROOT / gen.PROTO.parent
    stale = [p.name for p in fresh if p.read_bytes() != (committed_dir / p.name).read_bytes()]
    assert not stale, f"regenerate with `python -m tjob.api.gen`: {stale} differ from the proto"


def test_generated_code_imports_as_a_package() -> None:
    from tjob.api.tjob.v1 import tjob_grpc, tjob_pb2, tjob_pb2_grpc

    assert tjob_pb2.DESCRIPTOR.package == "tjob.v1"
    assert tjob_grpc.JobServiceBase.__abstractmethods__ >= {"Run", "Logs", "Stats"}
    assert tjob_pb2_grpc.JobServiceStub is not None


def test_generate_refuses_nothing_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "PROTO", Path("tjob/api/tjob/v1/missing.proto"))
    with pytest.raises(RuntimeError, match="protoc failed"):
        gen.generate(tmp_path)
