"""Builds tjob-shim (src/tjob/shim/*.c), the C program each job's supervisor and init run, into
the package next to the Python modules. Everything else about the project is in pyproject.toml.

setuptools has no kind of target for a plain executable, so the shim is declared as an
extension and this build_ext links it as a program instead of a Python module. Before it
compiles, it writes the shim's protocol.h from src/tjob/protocol/constants.py with
src/tjob/protocol_h.py (both loaded by path: under pip's build isolation the package is not
importable).

The shim's sources, libraries and flags are module constants, and setup() runs only as a
script: tests/aarch64/cross_build.py imports this file to build the same shim for aarch64."""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
import types

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SHIM = "tjob.tjob-shim"
SHIM_DIR = "src/tjob/shim"
PROTOCOL = "src/tjob/protocol/constants.py"
PROTOCOL_H = "src/tjob/protocol_h.py"
# A glob: each concern is a file of its own, and new ones join without an edit here.
SHIM_SOURCES = sorted(glob.glob(f"{SHIM_DIR}/*.c"))
SHIM_DEPENDS = [*sorted(glob.glob(f"{SHIM_DIR}/*.h")), PROTOCOL, PROTOCOL_H]
SHIM_LIBRARIES = ["seccomp", "z"]  # the jobs' seccomp filter; zlib's crc32 (logwriter.c)
SHIM_CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]


def _load(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def protocol_header() -> str:
    protocol = _load("_tjob_protocol", PROTOCOL)
    return str(_load("_tjob_protocol_h", PROTOCOL_H).c_header(protocol))


class BuildShim(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        if fullname.rsplit(".", 1)[-1] == SHIM.rsplit(".", 1)[-1]:
            return os.path.join(*fullname.split("."))  # no ABI suffix: it is not a module
        return str(super().get_ext_filename(fullname))

    def build_extension(self, ext: Extension) -> None:
        if ext.name != SHIM:
            super().build_extension(ext)
            return
        include = os.path.join(self.build_temp, "tjob-shim-include")
        os.makedirs(include, exist_ok=True)
        with open(os.path.join(include, "protocol.h"), "w") as f:
            f.write(protocol_header())
        objects = self.compiler.compile(
            ext.sources,
            output_dir=self.build_temp,
            include_dirs=[include],
            extra_postargs=ext.extra_compile_args,
            depends=ext.depends,
        )
        path = self.get_ext_fullpath(ext.name)
        self.compiler.link_executable(
            objects,
            os.path.basename(path),
            output_dir=os.path.dirname(path),
            libraries=ext.libraries,
        )


if __name__ == "__main__":  # as pip's build backend runs it too
    setup(
        ext_modules=[
            Extension(
                SHIM,
                sources=SHIM_SOURCES,
                depends=SHIM_DEPENDS,
                libraries=SHIM_LIBRARIES,
                extra_compile_args=SHIM_CFLAGS,
            )
        ],
        cmdclass={"build_ext": BuildShim},
    )
