"""The aarch64 guest's initramfs tree (tests/aarch64/run.sh): tjob-shim cross-built from the
same sources, libraries and flags as setup.py's build (read from setup.py itself), statically
linked against the arm64 libseccomp and zlib in SYSROOT; guest-init.c as /init; and the jail
settings jail.py derives from the shipped profile for machine aarch64; and compat-probe.c,
built for armhf (AArch32), with which the selftest makes calls through the compat ABI.

    .venv/bin/python tests/aarch64/cross_build.py --cc aarch64-linux-gnu-gcc \\
        --compat-cc arm-linux-gnueabihf-gcc --sysroot DIR --out DIR [--profile seccomp.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tjob import jail

PROJECT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MACHINE = "aarch64"
LIBDIR = "usr/lib/aarch64-linux-gnu"  # Debian's multiarch directory for arm64


def load_setup() -> ModuleType:
    """setup.py as a module (its setup() runs only as a script); its globs are relative to
    the project's root, as in a pip build."""
    os.chdir(PROJECT)
    spec = importlib.util.spec_from_file_location("_tjob_setup", PROJECT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def compile_static(cc: str, flags: list[str], sources: list[str], out: Path, *extra: str) -> None:
    cmd = [cc, *flags, "-static", "-o", str(out), *sources, *extra]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build(cc: str, compat_cc: str, sysroot: Path, out: Path, profile: Path) -> None:
    setup = load_setup()
    include = out / "include"
    include.mkdir(parents=True, exist_ok=True)
    (include / "protocol.h").write_text(setup.protocol_header())
    root = out / "root"
    root.mkdir(exist_ok=True)
    # The arm64 packages' headers (seccomp.h, zlib.h) and archives; libc is the cross
    # compiler's own.
    paths = [f"-I{include}", f"-I{sysroot / 'usr/include'}", f"-L{sysroot / LIBDIR}"]
    libs = [f"-l{lib}" for lib in setup.SHIM_LIBRARIES]
    compile_static(cc, setup.SHIM_CFLAGS + paths, setup.SHIM_SOURCES, root / "tjob-shim", *libs)
    compile_static(cc, setup.SHIM_CFLAGS, [str(HERE / "guest-init.c")], root / "init")
    probe = [str(HERE / "compat-probe.c")]
    compile_static(compat_cc, setup.SHIM_CFLAGS, probe, root / "compat-probe")
    rules = jail.profile_rules(profile, MACHINE)
    (root / "jail-settings").write_text("\n".join(rules) + "\n")
    print(f"{len(rules)} jail settings lines for {MACHINE} from {profile}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cc", required=True)
    parser.add_argument("--compat-cc", required=True)
    parser.add_argument("--sysroot", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", type=Path, default=jail.DEFAULT_PROFILE)
    args = parser.parse_args()
    build(
        args.cc, args.compat_cc, args.sysroot.resolve(), args.out.resolve(), args.profile.resolve()
    )


if __name__ == "__main__":
    main()
