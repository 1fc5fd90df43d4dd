#!/bin/bash
# PID 1 of the systemd guest (run.sh --systemd): lay a writable overlay (upper: a tmpfs) over the
# read-only 9p root, switch into it and exec systemd, which boots on pure cgroup v2 and runs
# tjob-systemd-test.service (systemd-test.sh): that prints the verdict and powers the guest off.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
marker=TJOB-CGROUP2-PYTEST-EXIT

abort() {
    # An init that exits panics the kernel: report "internal error" and power off instead.
    trap - EXIT
    echo "guest: could not hand over to systemd"
    echo "$marker=3"
    poweroff -f 2>/dev/null || echo o >/proc/sysrq-trigger
    sleep 60
}
trap abort EXIT

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)

fstype() { stat -f -c %T "$1" 2>/dev/null || true; }
[ "$(fstype /proc)" = proc ] || mount -t proc proc /proc
[ "$(fstype /sys)" = sysfs ] || mount -t sysfs sysfs /sys
[ "$(fstype /dev)" = tmpfs ] || mount -t devtmpfs devtmpfs /dev
[ "$(fstype /run)" = tmpfs ] || mount -t tmpfs -o mode=0755 tmpfs /run
modprobe overlay 2>/dev/null || true # built into the initramfs' module list, normally loaded

# The overlay's upper layer and work dir live on a tmpfs over /mnt (a directory every Debian
# root has); whatever the guest writes (units, certificates, state) stays in guest memory.
new=/mnt/root
mount -t tmpfs -o mode=0755 tmpfs /mnt
mkdir -p /mnt/upper /mnt/work "$new"
mount -t overlay overlay -o lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/work "$new"

# The test unit, and a target that wants only it (not the host's enabled services).
units=$new/etc/systemd/system
mkdir -p "$units"
# The project may live under /tmp (CI clones anywhere): systemd must neither mount a tmpfs over
# /tmp (tmp.mount) nor empty it at boot (tmpfiles' "D /tmp"), which would hide the project.
ln -sf /dev/null "$units/tmp.mount"
mkdir -p "$new/etc/tmpfiles.d"
echo "d /tmp 1777 root root -" >"$new/etc/tmpfiles.d/tmp.conf"
cat >"$units/tjob-systemd-test.target" <<UNIT
[Unit]
Description=tjob: tjobs as a systemd service, tested
Requires=tjob-systemd-test.service
AllowIsolate=yes
UNIT
cat >"$units/tjob-systemd-test.service" <<UNIT
[Unit]
Description=tjob: tests/cgroup2/systemd-test.sh
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=$here/systemd-test.sh $project
StandardOutput=journal+console
StandardError=journal+console
UNIT

# -n: no userspace mount table to update (it lives in the /run being moved).
for d in dev proc sys run; do
    mount -n --move "/$d" "$new/$d"
done
cd "$new"
mkdir -p oldroot
pivot_root . oldroot
trap - EXIT
exec /lib/systemd/systemd --unit=tjob-systemd-test.target
