"""Regenerate the gRPC code from ``tjob/v1/tjob.proto``: ``python -m tjob.api.gen``.

The generated modules are committed (so an install needs no protoc); ``tests/test_proto_fresh.py``
regenerates them into a temporary directory and fails when the committed copies differ.

Four files come out of the one proto, beside it:
``tjob_pb2.py`` / ``tjob_pb2.pyi`` (messages), ``tjob_pb2_grpc.py`` (grpcio stubs, used by
clients) and ``tjob_grpc.py`` (grpclib base class, used by the server).

The proto is compiled with ``src/`` as the include root, so its name is
``tjob/api/tjob/v1/tjob.proto`` and the generated imports read ``from tjob.api.tjob.v1 import
...``: importable as they are, no rewriting.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

SRC_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `tjob` package
PROTO = Path("tjob/api/tjob/v1/tjob.proto")  # relative to SRC_ROOT: it is also the proto's name
GENERATED = ("tjob_pb2.py", "tjob_pb2.pyi", "tjob_pb2_grpc.py", "tjob_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Compile the proto into ``out_root`` (laid out like ``src/``); return the files written."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    out_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # grpclib's protoc plugin, run by this interpreter whatever venv or PATH is in effect.
        plugin = Path(tmp) / "protoc-gen-grpclib_python"
        plugin.write_text(
            f"#!{sys.executable}\nfrom grpclib.plugin.main import main\nmain()\n", "utf-8"
        )
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
        well_known = Path(protoc.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{SRC_ROOT}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-grpclib_python={plugin}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"--grpclib_python_out={out_root}",
            str(SRC_ROOT / PROTO),
        ]
        code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    out_dir = out_root / PROTO.parent
    return [out_dir / name for name in GENERATED]


def main() -> int:
    written = generate(SRC_ROOT)
    for path in written:
        print(os.path.relpath(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
