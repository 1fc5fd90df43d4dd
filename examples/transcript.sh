#!/usr/bin/env bash
# The seed README's `tjob` CLI transcript, replayed against a running tjobs (`make demo` starts
# one on localhost:8080 with the certificates in .tjob/). Each command is echoed with "$ " as
# the README shows it, then run. Commands the seed shows being refused must fail; anything else
# failing makes the script exit 1 at the end (after the rest has run).
#
# Differences from the seed, on purpose: `logs` of a running job uses --no-follow (following
# would block the script until the job ends), and the job's stderr (find's "Permission denied",
# jobs run as an unprivileged user) is left out with --stdout to keep the output readable.
#
# Usage: examples/transcript.sh        (from anywhere; runs in the repository root)
#        TJOB=path/to/tjob TJOB_HOST=host:port examples/transcript.sh

set -u
cd "$(dirname "$0")/.." || exit 1

TJOB_BIN=${TJOB:-.venv/bin/tjob}
failures=0

tjob() { "$TJOB_BIN" "$@"; }

say() { printf '\n# %s\n' "$1"; }

# run 'COMMAND LINE': echo it as typed, run it; it must succeed.
run() {
    printf '$ %s\n' "$1"
    eval "$1"
    local code=$?
    if [ "$code" -ne 0 ]; then
        printf '[exit %d: expected success]\n' "$code"
        failures=$((failures + 1))
    fi
    return "$code"
}

# refuse 'COMMAND LINE': echo it, run it; it must fail (as the seed shows).
refuse() {
    printf '$ %s\n' "$1"
    eval "$1"
    local code=$?
    if [ "$code" -eq 0 ]; then
        printf '[exit 0: expected a refusal]\n'
        failures=$((failures + 1))
    fi
    return "$code"
}

# start 'COMMAND LINE' VAR: echo it, run it, keep the job id it prints in VAR.
start() {
    printf '$ %s\n' "$1"
    local id
    id=$(eval "$1")
    local code=$?
    printf '%s\n' "$id"
    if [ "$code" -ne 0 ] || [ -z "$id" ]; then
        failures=$((failures + 1))
    fi
    printf -v "$2" '%s' "$id"
}

if [ ! -r .tjob/ca.crt ]; then
    echo "transcript: no .tjob/ca.crt here; create the certificates with: .venv/bin/tjobs certs" >&2
    exit 1
fi

say "show help for tjob CLI"
run "tjob -h"

say "run job to find all text files"
start "tjob run find / -name '*.txt'" FIND

say "show the status of the running job"
run "tjob ps $FIND"

say "show the logs of the job so far (the seed follows them and presses Ctrl+C)"
run "tjob logs --no-follow --stdout $FIND | head -n 5"

say "show the status of it again"
run "tjob ps $FIND"

say "stop the running job"
run "tjob stop $FIND"

say "show the status after stopped"
run "tjob ps $FIND"

say "show the logs after stopped (the whole output, from the first byte; here its end)"
run "tjob logs --stdout $FIND | tail -n 3"

say "run short-lived job"
start "tjob run uname -a" UNAME
run "tjob wait $UNAME"

say "show the status of it"
run "tjob ps $UNAME"

say "show the logs of it"
run "tjob logs $UNAME"

say "others cannot see logs"
refuse "tjob logs -cert .tjob/other.crt -key .tjob/other.key $UNAME"

say "others cannot see status"
refuse "tjob ps -cert .tjob/other.crt -key .tjob/other.key $UNAME"

say "others cannot stop it"
refuse "tjob stop -cert .tjob/other.crt -key .tjob/other.key $UNAME"

say "others can run own job"
start "tjob run -cert .tjob/other.crt -key .tjob/other.key uname -a" THEIRS
run "tjob wait -cert .tjob/other.crt -key .tjob/other.key $THEIRS"

say "others can see status of it"
run "tjob ps -cert .tjob/other.crt -key .tjob/other.key $THEIRS"

say "others can see logs of it"
run "tjob logs -cert .tjob/other.crt -key .tjob/other.key $THEIRS"

say "beyond the seed: attach, and get the job's exit code"
refuse "tjob run --attach sh -c 'echo working; exit 3'"
echo "(exit code $?)"
say "beyond the seed: all of my jobs, newest first"
run "tjob ps"

if [ "$failures" -ne 0 ]; then
    printf '\ntranscript: %d command(s) did not behave as the seed shows\n' "$failures" >&2
    exit 1
fi
