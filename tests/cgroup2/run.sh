#!/usr/bin/env bash
# The cgroup v2 lane (make test-cgroup2): boot a pure-v2 kernel under qemu with this host's own
# root shared read-only over 9p, run the tests marked cgroup2 in it, exit with pytest's code.
#
# Why a VM: these machines run cgroup v1 (hybrid); only a real v2 kernel shows what it refuses.
# Needs root (apt-get, and 9p passthrough must read every file of /). Arguments, if any, replace
# the guest pytest's default `tests` (e.g. tests/test_cgroup2_real.py -k cpu). Environment:
# TJOB_CG2_TIMEOUT (seconds, default 600), TJOB_CG2_SMP (default 2), TJOB_CG2_MEM (MiB, 2048).
#
# `run.sh --systemd` (make test-systemd) boots the host's systemd as the guest's init instead,
# over a writable overlay of the shared root, and runs systemd-test.sh as a unit: tjobs as a
# system service, for real (guest-init-systemd.sh). Default timeout there: 600 s.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
mode=pytest
if [ "${1:-}" = --systemd ]; then
    mode=systemd
    shift
fi
timeout_s=${TJOB_CG2_TIMEOUT:-600}
marker=TJOB-CGROUP2-PYTEST-EXIT

if [ "$(id -u)" != 0 ]; then
    echo "test-cgroup2: needs root (installs packages, shares / with the guest)" >&2
    exit 1
fi
if [ ! -x "$project/.venv/bin/python" ]; then
    echo "test-cgroup2: no venv at $project/.venv (run make install first)" >&2
    exit 1
fi

newest_kernel() {
    # Only a kernel whose modules are installed can load 9p in its initramfs.
    local k v
    for k in $(printf '%s\n' /boot/vmlinuz-* | sort -V -r); do
        v=${k#/boot/vmlinuz-}
        if [ -d "/lib/modules/$v/kernel/fs/9p" ]; then
            echo "$v"
            return
        fi
    done
}

# ---------------------------------------------------------------- what the host needs
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkinitramfs >/dev/null || need+=(initramfs-tools)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
[ -n "$(newest_kernel)" ] || need+=(linux-image-amd64)
if [ $mode = systemd ] && [ ! -x /lib/systemd/systemd ]; then
    need+=(systemd)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "test-cgroup2: installing ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
kver=$(newest_kernel)
if [ -z "$kver" ]; then
    echo "test-cgroup2: no kernel with 9p modules under /boot and /lib/modules" >&2
    exit 1
fi

work=$(mktemp -d /var/tmp/tjob-cgroup2.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM # so that the EXIT trap runs

# ---------------------------------------------------------------- initramfs
# A private initramfs (the stock one lacks 9p) with only what the guest needs: 9p for the root,
# virtio_blk for the scratch disk (no udev will load it later). The host's /etc/initramfs-tools
# and /boot stay untouched; MODULES=list keeps it ~5 MB and quick to build (~2 s).
conf=$work/initramfs-tools
cp -a /etc/initramfs-tools/. "$conf/"
sed -i 's/^MODULES=.*/MODULES=list/' "$conf/initramfs.conf"
# overlay: the systemd mode's writable root.
printf '%s\n' 9p 9pnet 9pnet_virtio virtio_pci virtio_blk overlay >>"$conf/modules"
mkinitramfs -d "$conf" -o "$work/initrd.img" "$kver"

# ---------------------------------------------------------------- scratch disk
# A real block device for the io.max test (9p and tmpfs have none); the guest mounts it rw.
truncate -s 128M "$work/disk.img"
mkfs.ext4 -q -F -O ^has_journal -E lazy_itable_init=0 "$work/disk.img"

# Pytest arguments reach the guest through a file in the shared root (NUL-separated).
if [ $# -gt 0 ]; then
    printf '%s\0' "$@" >"$work/pytest-args"
fi

# The guest mounts its scratch tmpfs here (tests/conftest.py's SHARED: jobs see it, unlike
# /tmp, /var/tmp and /run, which are each job's own).
mkdir -p /var/lib/tjob-test

# ---------------------------------------------------------------- boot
# TCG, not KVM: with -enable-kvm (nested) the guest hangs at "Booting from ROM" on these machines.
# -no-reboot with panic=-1: a panicking guest ends qemu at once instead of rebooting.
# cgroup_no_v1=all: every controller belongs to the unified hierarchy (pure v2).
# cache=loose: the guest caches what it reads of the host's files, which halves the run (Python
# imports over 9p); the tree must not change while the guest runs.
# shellcheck disable=SC2054 # the commas are rootflags' own separators
cmdline=(
    console=ttyS0 quiet panic=-1 cgroup_no_v1=all
    root=rootfs rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro
    "init=$here/guest-init.sh" "tjob_work=$work"
)
if [ $mode = systemd ]; then
    # systemd's own cgroup mount is then the unified one; only failed units' status lines show.
    cmdline=("${cmdline[@]/#init=*/init=$here/guest-init-systemd.sh}")
    cmdline+=(systemd.unified_cgroup_hierarchy=1 systemd.show_status=error)
fi
echo "test-cgroup2: booting $kver, $mode mode (timeout ${timeout_s}s)"
start=$(date +%s)
set +e
# stdin from /dev/null: qemu leaves the caller's terminal alone; the console goes to stdout.
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
    -accel tcg -cpu max -m "${TJOB_CG2_MEM:-2048}" -smp "${TJOB_CG2_SMP:-2}" \
    -nodefaults -no-reboot -display none -serial stdio \
    -kernel "/boot/vmlinuz-$kver" -initrd "$work/initrd.img" -append "${cmdline[*]}" \
    -fsdev local,id=root,path=/,security_model=passthrough,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=root,mount_tag=rootfs \
    -drive file="$work/disk.img",format=raw,if=virtio,cache=unsafe \
    </dev/null | tee "$work/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e
echo "test-cgroup2: guest ran $(($(date +%s) - start))s, qemu exit $qemu_rc"

. "$here/../guest-exit.sh"
guest_exit test-cgroup2 "$marker" "$work/console.log" "$qemu_rc" "$timeout_s" "pytest's exit code"
