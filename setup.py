"""Builds tjob-shim (src/tjob/shim.c), the C program each job's supervisor and init run, into
the package next to the Python modules. Everything else about the project is in pyproject.toml.

setuptools has no kind of target for a plain executable, so the shim is declared as an
extension and this build_ext links it as a program instead of a Python module."""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SHIM = "tjob.tjob-shim"


class BuildShim(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        if fullname.rsplit(".", 1)[-1] == SHIM.rsplit(".", 1)[-1]:
            return os.path.join(*fullname.split("."))  # no ABI suffix: it is not a module
        return str(super().get_ext_filename(fullname))

    def build_extension(self, ext: Extension) -> None:
        if ext.name != SHIM:
            super().build_extension(ext)
            return
        objects = self.compiler.compile(
            ext.sources, output_dir=self.build_temp, extra_postargs=ext.extra_compile_args
        )
        path = self.get_ext_fullpath(ext.name)
        self.compiler.link_executable(
            objects,
            os.path.basename(path),
            output_dir=os.path.dirname(path),
            libraries=ext.libraries,
        )


setup(
    ext_modules=[
        Extension(
            SHIM,
            sources=[
                "src/tjob/shim.c",
                "src/tjob/shim/jail_filter.c",
                "src/tjob/shim/jail_mounts.c",
                "src/tjob/shim/jail_privs.c",
            ],
            libraries=["seccomp"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror"],
        )
    ],
    cmdclass={"build_ext": BuildShim},
)
