#!/bin/bash
# tjobs as a systemd service, for real (make test-systemd). systemd runs this in the guest as
# tjob-systemd-test.service (see guest-init-systemd.sh); it prints the verdict as the marker
# line on the console and systemd powers the guest off when it ends.
#
# Checks: `tjobs install-service` + `systemctl start tjobs` (Type=notify: start returns once
# tjobs listens); where tjobs and the jobs' cgroups sit (systemd 254+: the unit's supervisor leaf
# and <unit>/jobs; older systemd: tjobs in the unit, the rest in tjobs-jobs.scope beside it; never
# the cgroup root); JSON log lines in the journal; `systemctl restart` with a job running leaves
# the job running and re-adopted (status, logs, stop); `systemctl stop` leaves only each running
# job's supervisor and init (tjob-shim) and the job itself (KillMode=process, by design). Then,
# on older systemd, `cgroup-parent = "delegated"` (jobs under the unit) and its warning.
set -uo pipefail
project=$1
marker=TJOB-CGROUP2-PYTEST-EXIT
cg=/sys/fs/cgroup
unit_cg=$cg/system.slice/tjobs.service
scope_cg=$cg/system.slice/tjobs-jobs.scope
export PATH=$project/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root PYTHONPATH=$project/src
export TJOB_CA=/etc/tjob/ca.crt TJOB_CERT=/etc/tjob/cli.crt TJOB_KEY=/etc/tjob/cli.key
start=$(date +%s)

say() { echo "systemd-test [$(($(date +%s) - start))s]: $*"; }
# A guard against hangs: a tjob command that has not answered in a minute fails (with `diag`
# where its caller checks), instead of the guest running out of time in silence.
tjob() { timeout 60 "$project/.venv/bin/tjob" "$@"; }
diag() {
    systemctl status tjobs --no-pager -l
    journalctl -u tjobs --no-pager -n 40 -o cat
    for f in $(find "$unit_cg" "$scope_cg" -name cgroup.procs 2>/dev/null); do
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
# A job's cgroup: <jobs>/<client>/<job> (a cgroup per client).
job_dir() { find "$jobs_cg" -mindepth 2 -maxdepth 2 -type d -name "$1*"; }
procs() { tr '\n' ' ' <"$1/cgroup.procs"; }
main_pid() { systemctl show -p MainPID --value tjobs; }
set_key() { # KEY VALUE: one line of the config file, replaced or added
    sed -i "/^$1 = /d" /etc/tjob/tjobs.toml
    echo "$1 = $2" >>/etc/tjob/tjobs.toml
}

sd_version=$(systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
if [ "$sd_version" -ge 254 ]; then
    main_cg=/system.slice/tjobs.service/supervisor leaf=$unit_cg/supervisor jobs_cg=$unit_cg/jobs
else
    main_cg=/system.slice/tjobs.service leaf=$scope_cg/supervisor jobs_cg=$scope_cg/jobs
fi
say "kernel $(uname -r), $(systemctl --version | head -n 1), cgroup controllers: $(cat $cg/cgroup.controllers)"

# ---------------------------------------------------------------- install and start
tjobs certs --dir /etc/tjob >/dev/null || fail "tjobs certs"
tjobs install-service || fail "tjobs install-service"
unit=/etc/systemd/system/tjobs.service
for line in Type=notify KillMode=process Delegate=yes Restart=on-failure; do
    grep -qx "$line" "$unit" || fail "the unit lacks $line"
done
# A state directory of the guest's own (the host's /var/lib may hold one).
set_key state-dir '"/var/lib/tjob-systemd-test"'
tjobs config check || fail "tjobs config check"
systemctl daemon-reload
systemctl start tjobs || fail "systemctl start tjobs"
main=$(main_pid)
say "tjobs started: MainPID=$main in $(cut -d: -f3 "/proc/$main/cgroup")"
[ "$(cat "/proc/$main/cgroup")" = "0::$main_cg" ] ||
    fail "tjobs is in $(cat "/proc/$main/cgroup"), not $main_cg"
[ ! -e "$cg/tjob" ] || fail "a tjob cgroup at the root of the hierarchy"
journalctl -u tjobs -o cat | grep -q '^{.*"message": "listen on' || fail "no JSON 'listen' line"

# ---------------------------------------------------------------- a job, in its place
a=$(tjob run sh -c 'echo hello-from-a; exec sleep 1000') || fail "tjob run"
adir=$(job_dir "$a")
[ -n "$adir" ] || fail "no cgroup for job $a under $jobs_cg"
[ -n "$(procs "$adir")" ] || fail "job $a's cgroup $adir is empty"
[ "$(cat "$adir/memory.max")" = $((20 << 20)) ] || fail "memory.max $(cat "$adir/memory.max")"
apids=$(procs "$adir")
until_true 'tjob logs --no-follow "$a" | grep -q hello-from-a' || fail "no output from job $a"
say "job $a runs in ${adir#"$cg"} (pids $apids)"

# ---------------------------------------------------------------- restart with a job running
systemctl restart tjobs || fail "systemctl restart tjobs with job $a running"
[ "$(main_pid)" != "$main" ] || fail "restart kept the same tjobs ($main)"
[ "$(procs "$adir")" = "$apids" ] || fail "job $a's processes changed: $apids -> $(procs "$adir")"
[ "$(state_of "$a")" = running ] || fail "job $a is $(state_of "$a") after the restart"
tjob logs --no-follow "$a" | grep -q hello-from-a || fail "job $a's output lost"
tjob stop -t 1 "$a" >/dev/null || fail "tjob stop $a after the restart"
[ "$(state_of "$a")" = stopped ] || fail "job $a is $(state_of "$a") after stop"
until_true '[ ! -e "$adir" ]' || fail "job $a's cgroup $adir stays after its end"
say "restart: job $a survived, was re-adopted and stopped"

# ---------------------------------------------------------------- stop leaves only supervisors
b=$(tjob run sleep 1000) || fail "tjob run b"
bdir=$(job_dir "$b")
systemctl stop tjobs || fail "systemctl stop tjobs"
[ "$(systemctl is-active tjobs)" = inactive ] || fail "tjobs is $(systemctl is-active tjobs)"
# A running job keeps its supervisor and its init (both tjob-shim, in the leaf) and itself.
left=()
for p in $(cat "$leaf/cgroup.procs"); do
    left+=("$(cat "/proc/$p/comm" 2>/dev/null)")
done
[ "${left[*]}" = "tjob-shim tjob-shim" ] ||
    fail "left in $leaf: ${left[*]:-nothing} (want job $b's supervisor and init)"
[ -n "$(procs "$bdir")" ] || fail "job $b died with tjobs"
pgrep -f 'bin/tjobs' >/dev/null && fail "a tjobs process outlived systemctl stop"
say "stop: left job $b with its supervisor and init, nothing else"
echo 1 >"$bdir/cgroup.kill"
until_true '[ ! -e "$bdir" ]' || fail "job $b's cgroup stays after it was killed"

# ---------------------------------------------------------------- older systemd, jobs in the unit
if [ "$sd_version" -lt 254 ]; then
    # Let b's supervisor record its end and go; then the scope goes with it.
    until_true '[ ! -e "$scope_cg" ]' || fail "$scope_cg stays with nothing in it"
    set_key cgroup-parent '"delegated"'
    jobs_cg=$unit_cg/jobs
    systemctl start tjobs || fail "systemctl start tjobs with cgroup-parent delegated"
    journalctl -u tjobs -o cat | grep -q '"level": "warning".*systemd < 254' ||
        fail "tjobs did not warn that it cannot start again while jobs run"
    c=$(tjob run sleep 1000) || fail "tjob run c"
    [ -n "$(procs "$(job_dir "$c")")" ] || fail "job $c is not under $jobs_cg"
    tjob stop -t 1 "$c" >/dev/null || fail "tjob stop $c"
    systemctl stop tjobs || fail "the last systemctl stop"
    say "cgroup-parent delegated: job $c ran under the unit, with the warning"
fi
say "PASS"
echo "$marker=0"
