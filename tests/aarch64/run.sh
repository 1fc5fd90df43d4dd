#!/usr/bin/env bash
# The aarch64 lane (make test-aarch64): the jobs' seccomp filter built and checked on aarch64.
#
# tjob-shim is cross-built for aarch64 (tests/aarch64/cross_build.py: setup.py's sources and
# flags, linked statically with Debian's arm64 libseccomp and zlib), and booted with Debian's
# arm64 kernel under qemu-system-aarch64 (TCG) from an initramfs of four files: the shim, the
# jail settings jail.py derives from the shipped profile for aarch64, an AArch32 (armhf)
# compat-probe.c for the calls through the 32-bit compat ABI, and a static /init
# (guest-init.c) that runs `tjob-shim selftest seccomp /compat-probe` and prints its exit
# status after a marker. Exits with that status.
#
# Needs root (apt-get). The arm64 packages come through a private apt configuration of their
# own (lists and .debs kept in the cache directory): the host's dpkg gets no foreign
# architecture. Environment: TJOB_AARCH64_TIMEOUT (seconds the guest may run, default 300),
# TJOB_AARCH64_CACHE (default /var/cache/tjob-aarch64), TJOB_AARCH64_MIRROR (default
# http://deb.debian.org), TJOB_AARCH64_PROFILE (the seccomp profile, default the shipped one).
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) ends the script too

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
timeout_s=${TJOB_AARCH64_TIMEOUT:-300}
cache=${TJOB_AARCH64_CACHE:-/var/cache/tjob-aarch64}
mirror=${TJOB_AARCH64_MIRROR:-http://deb.debian.org}
marker=TJOB-AARCH64-SELFTEST-EXIT
cc=aarch64-linux-gnu-gcc
compat_cc=arm-linux-gnueabihf-gcc

if [ "$(id -u)" != 0 ]; then
    echo "test-aarch64: needs root (installs packages)" >&2
    exit 1
fi
if [ ! -x "$project/.venv/bin/python" ]; then
    echo "test-aarch64: no venv at $project/.venv (run make install first)" >&2
    exit 1
fi

# ---------------------------------------------------------------- what the host needs
need=()
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v $cc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -f /usr/aarch64-linux-gnu/lib/libc.a ] || need+=(libc6-dev-arm64-cross)
command -v $compat_cc >/dev/null || need+=(gcc-arm-linux-gnueabihf)
[ -f /usr/arm-linux-gnueabihf/lib/libc.a ] || need+=(libc6-dev-armhf-cross)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    echo "test-aarch64: installing ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# ---------------------------------------------------------------- arm64 packages
# apt for arm64 only, with its own sources, lists and status: `apt-get download` needs the
# arm64 indexes, and nothing of it touches the host's apt or dpkg state.
apt_dir=$cache/apt
debs=$cache/debs
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache" "$apt_dir/parts" "$debs"
touch "$apt_dir/status"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$apt_dir/sources.list" <<EOF
deb [arch=arm64 signed-by=$keyring] $mirror/debian bookworm main
deb [arch=arm64 signed-by=$keyring] $mirror/debian bookworm-updates main
deb [arch=arm64 signed-by=$keyring] $mirror/debian-security bookworm-security main
EOF
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir/cache" -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o APT::Sandbox::User=root
)
echo "test-aarch64: arm64 package lists ($mirror)"
apt-get -q "${apt_opts[@]}" update >"$apt_dir/update.log" 2>&1 || {
    cat "$apt_dir/update.log" >&2
    exit 1
}

# The candidate .deb of arm64 package $1, downloaded into $debs unless there already (the
# same SHA-256 as the index says).
fetch_deb() {
    local uri url file size hash
    uri=$(apt-get -q "${apt_opts[@]}" download --print-uris "$1")
    read -r url file size hash <<<"$uri"
    if [ -z "$file" ] || [ "${hash%%:*}" != SHA256 ]; then
        echo "test-aarch64: cannot locate arm64 package $1 (${url:-nothing})" >&2
        return 1
    fi
    if [ "$(sha256sum "$debs/$file" 2>/dev/null | cut -d' ' -f1)" != "${hash#SHA256:}" ]; then
        (cd "$debs" && apt-get -q "${apt_opts[@]}" download "$1" >&2)
    fi
    echo "$debs/$file"
}
# The kernel the metapackage names now (linux-image-arm64 itself holds no kernel).
kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 |
    sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
    echo "test-aarch64: no arm64 kernel package found" >&2
    exit 1
fi
# One assignment each: a failed $(...) inside an array assignment would not end the script.
kernel_deb=$(fetch_deb "$kpkg")
seccomp_deb=$(fetch_deb libseccomp-dev)
zlib_deb=$(fetch_deb zlib1g-dev)
for deb in "$debs"/*.deb; do # older versions go
    case "$deb" in "$kernel_deb" | "$seccomp_deb" | "$zlib_deb") ;; *) rm -f "$deb" ;; esac
done

work=$(mktemp -d /var/tmp/tjob-aarch64.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM # so that the EXIT trap runs

# ---------------------------------------------------------------- build
dpkg-deb -x "$seccomp_deb" "$work/sysroot"
dpkg-deb -x "$zlib_deb" "$work/sysroot"
dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
kernel=$(printf '%s\n' "$work"/boot/vmlinuz-* | head -n 1)
"$project/.venv/bin/python" "$here/cross_build.py" --cc $cc --compat-cc $compat_cc \
    --sysroot "$work/sysroot" --out "$work/build" \
    --profile "${TJOB_AARCH64_PROFILE:-$project/src/tjob/seccomp.json}"
(cd "$work/build/root" && find . -mindepth 1 | cpio -o -H newc --owner=0:0 --quiet) \
    >"$work/initrd.cpio"

# ---------------------------------------------------------------- boot
# The virt board needs no disk or network here: the console is its PL011 UART (ttyAMA0),
# built into Debian's kernel, as are seccomp, BPF, perf, io_uring, user namespaces.
# pauth-impdef: -cpu max's architected pointer-authentication hash (QARMA) costs TCG ~5x the
# boot time (measured 11 s against 2 s); the implementation-defined one is cheap and the
# kernel uses either. -no-reboot with panic=-1: a panicking guest ends qemu at once.
echo "test-aarch64: booting $(basename "$kernel") (timeout ${timeout_s}s)"
start=$(date +%s)
set +e
timeout -k 10 "$timeout_s" qemu-system-aarch64 \
    -M virt -accel tcg -cpu max,pauth-impdef=on -m 512 -smp 1 \
    -nodefaults -no-reboot -display none -serial stdio \
    -kernel "$kernel" -initrd "$work/initrd.cpio" -append "console=ttyAMA0 panic=-1 quiet" \
    </dev/null | tee "$work/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e
echo "test-aarch64: guest ran $(($(date +%s) - start))s, qemu exit $qemu_rc"

# The serial console ends lines with CR LF, and a kernel message may share the marker's line.
rc=$(tr -d '\r' <"$work/console.log" | sed -n "s/.*$marker=\([0-9]\+\).*/\1/p" | tail -n 1)
if [ -z "$rc" ]; then
    if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
        echo "test-aarch64: the guest did not finish within ${timeout_s}s" >&2
    else
        echo "test-aarch64: the guest ended without reporting the selftest's exit status" >&2
    fi
    exit 1
fi
exit "$rc"
