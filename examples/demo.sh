#!/usr/bin/env bash
# `make demo`: certificates, a tjobs server, the seed's CLI transcript against it, then stop.
# Run from the project root as root, after `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
port=${TJOB_DEMO_PORT:-8080}
state=.tjob/state
log=.tjob/tjobs.log

[ -f .tjob/ca.crt ] || "$bin/tjobs" certs --dir .tjob
mkdir -p .tjob
"$bin/tjobs" --host "localhost:$port" --state-dir "$state" --admin admin 2>"$log" &
server=$!
stop_server() {
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    echo "--- tjobs log ($log) ---"
    cat "$log"
}
trap stop_server EXIT
# Wait for the server's start-up line (tail follows the file with inotify), or its death.
if ! timeout 30 grep -q -m1 -e "listen on" -e "tjobs: " <(tail -n +1 -f "$log" --pid "$server"); then
    echo "tjobs did not start" >&2
    exit 1
fi
grep -q "listen on" "$log" || exit 1

TJOB_HOST="localhost:$port" bash examples/transcript.sh
