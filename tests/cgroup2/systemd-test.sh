#!/bin/bash
# tjobs as a systemd service, for real (make test-systemd). systemd runs this in the guest as
# tjob-systemd-test.service (see guest-init-systemd.sh); it prints the verdict as the marker
# line on the console and systemd powers the guest off when it ends.
#
# Checks: `tjobs install-service` + `systemctl start tjobs` (Type=notify: start returns once
# tjobs listens); tjobs sits in <unit>/supervisor and jobs' cgroups under <unit>/jobs, nothing at
# the cgroup root; JSON log lines in the journal; `systemctl restart` with a job running leaves
# the job running and re-adopted (status, logs, stop) on systemd 254+, and on older systemd is
# refused with the job untouched, tjobs starting again once it ended (see the README); `systemctl
# stop` leaves only each running job's supervisor and init (tjob-shim) and the job itself
# (KillMode=process, by design).
set -uo pipefail
project=$1
marker=TJOB-CGROUP2-PYTEST-EXIT
cg=/sys/fs/cgroup
unit_cg=$cg/system.slice/tjobs.service
export PATH=$project/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root PYTHONPATH=$project/src
export TJOB_CA=/etc/tjob/ca.crt TJOB_CERT=/etc/tjob/cli.crt TJOB_KEY=/etc/tjob/cli.key
start=$(date +%s)

say() { echo "systemd-test [$(($(date +%s) - start))s]: $*"; }
diag() {
    systemctl status tjobs --no-pager -l
    journalctl -u tjobs --no-pager -n 40 -o cat
    for f in $(find "$unit_cg" -name cgroup.procs 2>/dev/null); do
        for p in $(cat "$f"); do echo "$f: $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done
    done
}
fail() {
    say "FAIL: $*"
    diag 2>&1 | sed 's/^/  | /'
    echo "$marker=1"
    exit 1
}
# A bounded wait for a condition (a shell test has no event to wait on here).
until_true() {
    local i
    for i in $(seq 100); do
        if eval "$1"; then return 0; fi
        sleep 0.1
    done
    return 1
}
state_of() { tjob ps --json "$1" | sed -n 's/.*"state": "\([a-z]*\)".*/\1/p'; }
job_dir() { find "$unit_cg/jobs" -mindepth 1 -maxdepth 1 -type d -name "$1*"; }
procs() { tr '\n' ' ' <"$1/cgroup.procs"; }

restart_with_job_running() {
    systemctl restart tjobs || fail "systemctl restart tjobs with job $a running"
    local main2
    main2=$(systemctl show -p MainPID --value tjobs)
    [ "$main2" != "$main" ] || fail "restart kept the same tjobs ($main)"
    [ "$(procs "$adir")" = "$apids" ] || fail "job $a's processes changed: $apids -> $(procs "$adir")"
    [ "$(state_of "$a")" = running ] || fail "job $a is $(state_of "$a") after the restart"
    tjob logs --no-follow "$a" | grep -q hello-from-a || fail "job $a's output lost"
    tjob stop -t 1 "$a" >/dev/null || fail "tjob stop $a after the restart"
    [ "$(state_of "$a")" = stopped ] || fail "job $a is $(state_of "$a") after stop"
    until_true '[ ! -e "$adir" ]' || fail "job $a's cgroup $adir stays after its end"
    say "restart: job $a survived, was re-adopted and stopped"
}

# systemd < 254 starts a service's process in the unit's own cgroup, which the kernel refuses
# while that cgroup passes controllers on to running jobs (no-internal-process rule): 219/CGROUP.
# (254+ starts it in the leaf, DelegateSubgroup=supervisor.) What must hold then: the job runs
# on untouched, its end is recorded without tjobs, and tjobs starts again once no job runs.
restart_refused_while_jobs_run() {
    journalctl -u tjobs -o cat | grep -q '"level": "warning".*systemd < 254' ||
        fail "tjobs did not warn that it cannot restart while jobs run"
    systemctl restart tjobs && fail "systemd $sd_version restarted tjobs with a job running"
    [ "$(systemctl show -p ExecMainStatus --value tjobs)" = 219 ] ||
        fail "restart failed, but not with 219/CGROUP"
    [ "$(procs "$adir")" = "$apids" ] || fail "job $a's processes changed: $apids -> $(procs "$adir")"
    say "restart refused (systemd $sd_version, 219/CGROUP) while job $a runs; the job runs on"
    echo 1 >"$adir/cgroup.kill"
    until_true '[ ! -e "$adir" ]' || fail "job $a's cgroup stays after it was killed"
    # Its supervisor records the end (with Python: the fork server is gone), then exits.
    until_true 'grep -qx "populated 0" "$unit_cg/cgroup.events"' ||
        fail "processes stay in the unit: $(procs "$unit_cg/supervisor")"
    # A restart now (stop: systemd removes the unit's empty cgroups; start) brings tjobs back.
    systemctl reset-failed tjobs
    systemctl restart tjobs || fail "systemctl restart tjobs once no job runs"
    [ "$(state_of "$a")" = exited ] || fail "job $a is $(state_of "$a"), not exited by its signal"
    tjob logs --no-follow "$a" | grep -q hello-from-a || fail "job $a's output lost"
    main=$(systemctl show -p MainPID --value tjobs)
    say "tjobs started again once the job ended, and found its end recorded"
}

sd_version=$(systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
say "kernel $(uname -r), $(systemctl --version | head -n 1), cgroup controllers: $(cat $cg/cgroup.controllers)"

# ---------------------------------------------------------------- install and start
tjobs certs --dir /etc/tjob >/dev/null || fail "tjobs certs"
tjobs install-service || fail "tjobs install-service"
unit=/etc/systemd/system/tjobs.service
for line in Type=notify KillMode=process Delegate=yes Restart=on-failure; do
    grep -qx "$line" "$unit" || fail "the unit lacks $line"
done
# A state directory of the guest's own (the host's /var/lib may hold one).
sed -i 's|^state-dir = .*|state-dir = "/var/lib/tjob-systemd-test"|' /etc/tjob/tjobs.toml
tjobs config check || fail "tjobs config check"
systemctl daemon-reload
systemctl start tjobs || fail "systemctl start tjobs"
say "tjobs started: $(systemctl show -p MainPID -p ActiveState tjobs | tr '\n' ' ')"
main=$(systemctl show -p MainPID --value tjobs)
[ "$(cat "/proc/$main/cgroup")" = "0::/system.slice/tjobs.service/supervisor" ] ||
    fail "tjobs is in $(cat "/proc/$main/cgroup"), not the unit's supervisor leaf"
[ -z "$(procs "$unit_cg")" ] || fail "processes in the unit's top cgroup: $(procs "$unit_cg")"
[ ! -e "$cg/tjob" ] || fail "a tjob cgroup at the root of the hierarchy"
journalctl -u tjobs -o cat | grep -q '^{.*"message": "listen on' || fail "no JSON 'listen' line"

# ---------------------------------------------------------------- jobs under the unit
a=$(tjob run sh -c 'echo hello-from-a; exec sleep 1000') || fail "tjob run"
adir=$(job_dir "$a")
[ -n "$adir" ] || fail "no cgroup for job $a under $unit_cg/jobs"
[ -n "$(procs "$adir")" ] || fail "job $a's cgroup $adir is empty"
[ "$(cat "$adir/memory.max")" = $((20 << 20)) ] || fail "memory.max $(cat "$adir/memory.max")"
apids=$(procs "$adir")
until_true 'tjob logs --no-follow "$a" | grep -q hello-from-a' || fail "no output from job $a"
say "job $a runs in ${adir#"$cg"} (pids $apids)"

# ---------------------------------------------------------------- restart with a job running
if [ "$sd_version" -ge 254 ]; then
    restart_with_job_running
else
    restart_refused_while_jobs_run
fi

# ---------------------------------------------------------------- stop leaves only supervisors
b=$(tjob run sleep 1000) || fail "tjob run b"
bdir=$(job_dir "$b")
systemctl stop tjobs || fail "systemctl stop tjobs"
[ "$(systemctl is-active tjobs)" = inactive ] || fail "tjobs is $(systemctl is-active tjobs)"
# A running job keeps its supervisor and its init (both tjob-shim, in the leaf) and itself.
left=()
for p in $(cat "$unit_cg/supervisor/cgroup.procs"); do
    left+=("$(cat "/proc/$p/comm" 2>/dev/null)")
done
[ "${left[*]}" = "tjob-shim tjob-shim" ] ||
    fail "left in the supervisor leaf: ${left[*]:-nothing} (want job $b's supervisor and init)"
[ -n "$(procs "$bdir")" ] || fail "job $b died with tjobs"
pgrep -f 'bin/tjobs' >/dev/null && fail "a tjobs process outlived systemctl stop"
say "stop: left job $b with its supervisor and init, nothing else"

echo 1 >"$bdir/cgroup.kill"
say "PASS"
echo "$marker=0"
