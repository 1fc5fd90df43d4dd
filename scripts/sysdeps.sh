#!/usr/bin/env bash
# The system packages building and testing tjob need, installed with apt when missing (Debian
# or Ubuntu, as root): `make install` runs this first, so `make test` and `make demo` work on a
# bare machine with only Python, pip and gcc. Nothing is installed when everything is there.
set -euo pipefail

PY=${PY:-python3}
need=()
# tjob-shim (src/tjob/shim/*.c) is compiled at install.
echo '#include <sys/mount.h>' | gcc -E -x c - >/dev/null 2>&1 || need+=(gcc libc6-dev)
# ... linked with libseccomp (the jobs' seccomp filter).
echo '#include <seccomp.h>' | gcc -E -x c - >/dev/null 2>&1 || need+=(libseccomp-dev)
# ... and with zlib (crc32 of the output log's frames).
echo '#include <zlib.h>' | gcc -E -x c - >/dev/null 2>&1 || need+=(zlib1g-dev)
# The venv: Debian splits ensurepip out of python3.
"$PY" -c 'import venv, ensurepip' 2>/dev/null ||
    need+=("python$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv")
# Tests: ps counts processes, ping checks a job's loopback; jobs run git and gcc (the jail's
# "ordinary work still works" cases).
command -v ps >/dev/null || need+=(procps)
command -v ping >/dev/null || need+=(iputils-ping)
command -v git >/dev/null || need+=(git)
# The fault suite (make test-faults) makes an ext4 filesystem on a loop device.
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v losetup >/dev/null || need+=(mount)
# Tests of `tjob completion zsh|fish` run the scripts in those shells.
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
# The install test also installs with pipx, as the README suggests.
command -v pipx >/dev/null || need+=(pipx)

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "tjob: missing system packages: ${need[*]} (install them, or run make as root on Debian/Ubuntu)" >&2
    exit 1
fi
echo "tjob: installing ${need[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
