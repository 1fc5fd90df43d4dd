# Sourced by the qemu lanes (tests/cgroup2/run.sh, tests/aarch64/run.sh): exit with the status
# the guest printed after MARKER= on its console, or 1 saying why there is none.
# Usage: guest_exit LANE MARKER CONSOLE_LOG QEMU_RC TIMEOUT_S WHAT
guest_exit() {
    local lane=$1 marker=$2 log=$3 qemu_rc=$4 timeout_s=$5 what=$6 rc
    # The serial console ends lines with CR LF, and a kernel message may share the marker's line.
    rc=$(tr -d '\r' <"$log" | sed -n "s/.*$marker=\([0-9]\+\).*/\1/p" | tail -n 1)
    if [ -z "$rc" ]; then
        if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
            echo "$lane: the guest did not finish within ${timeout_s}s" >&2
        else
            echo "$lane: the guest ended without reporting $what" >&2
        fi
        exit 1
    fi
    exit "$rc"
}
