#!/bin/bash
# PID 1 of the cgroup v2 guest (booted by run.sh): mount what a system needs, run the tests
# marked cgroup2 from the host's read-only root, print pytest's exit code, power off.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
marker=TJOB-CGROUP2-PYTEST-EXIT

finish() {
    # An init that exits panics the kernel: always end with poweroff, after the marker line.
    local rc=$1
    trap - EXIT
    echo "$marker=$rc"
    sync
    poweroff -f 2>/dev/null || echo o >/proc/sysrq-trigger
    sleep 60
}
trap 'finish 3' EXIT # any setup failure below: pytest never ran ("internal error")

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)

# The initramfs moves its /proc, /sys, /dev and /run here; mount whatever it did not. (Not
# `mountpoint`: over 9p the host's own mounts at these paths look like mount points too.)
fstype() { stat -f -c %T "$1" 2>/dev/null || true; }
[ "$(fstype /proc)" = proc ] || mount -t proc proc /proc
[ "$(fstype /sys)" = sysfs ] || mount -t sysfs sysfs /sys
[ "$(fstype /dev)" = tmpfs ] || mount -t devtmpfs devtmpfs /dev
[ "$(fstype /run)" = tmpfs ] || mount -t tmpfs -o mode=0755 tmpfs /run
# The root is read-only: a tmpfs takes state, pytest's basetemp and caches. Not on /tmp, which
# would hide the project if it lives there (CI may clone anywhere), nor anywhere jobs get a
# tmpfs of their own (/tmp, /var/tmp, /run): tests/conftest.py's SHARED, which run.sh made.
scratch=/var/lib/tjob-test
mount -t tmpfs -o mode=1777 tmpfs "$scratch"
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "guest: kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"

# The scratch disk from run.sh, for the io.max test (the 9p root has no block device).
disk=$(lsblk -dnro NAME,TYPE 2>/dev/null | awk '$2 == "disk" { print $1; exit }' || true)
if [ -n "$disk" ] && mkdir -p "$scratch/disk" && mount "/dev/$disk" "$scratch/disk"; then
    export TJOB_CGROUP2_DISK=$scratch/disk
    echo "guest: scratch disk /dev/$disk ($(cat "/sys/block/$disk/dev")) on $scratch/disk"
fi

# Default: every test file, the marker selects; run.sh's arguments replace that (paths, -k ...).
args=(tests)
work=$(sed -n 's/.*tjob_work=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$work" ] && [ -s "$work/pytest-args" ]; then
    mapfile -d '' args <"$work/pytest-args"
fi

cd "$project"
py=$project/.venv/bin/python
# Nothing may be written to the read-only project: no .pyc, no .pytest_cache, tmp in scratch.
# --timeout: each test takes seconds here (a bigger one says so itself); a stuck one must leave
# time for the rest (run.sh gives the whole guest 600 s).
export HOME=$scratch TMPDIR=$scratch PYTHONDONTWRITEBYTECODE=1
# Import tjob from this tree, even if the venv's editable install points at another checkout.
export PYTHONPATH=$project/src
"$py" -c 'import sys, tjob; print("guest: python", sys.version.split()[0], "tjob from", tjob.__path__[0])'
set +e
"$py" -m pytest -p no:cacheprovider -p no:hypothesispytest --color=no --basetemp="$scratch/pytest" \
    --timeout=60 -m cgroup2 -v "${args[@]}"
rc=$?
set -e
finish "$rc"
