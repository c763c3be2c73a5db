#!/usr/bin/env bash
# run-sim.sh BINDIR - `make sim`: the whole flow on this machine without a KIE
# account. Starts the KIE simulator on 127.0.0.1:$SIM_PORT (default 8001) and
# the server on 127.0.0.1:$PORT (default 8000) pointed at it, with
# PUBLIC_BASE_URL=http://127.0.0.1:$PORT so the simulator can fetch uploads
# (private URLs allowed on purpose), KIE's file upload pointed at the simulator
# too, and the generate rate limit off. The URL is printed once the server
# listens. Ctrl-C stops both.
set -euo pipefail
BIN=${1:-build}
PORT=${PORT:-8000}
SIM_PORT=${SIM_PORT:-8001}
STEP_MS=${SIM_STEP_MS:-2000}

"$BIN/kie-sim" --port "$SIM_PORT" --api-key sim-key --step-ms "$STEP_MS" > >(sed -u 's/^/kie-sim: /') &
sim=$!
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null
    kill "$sim" 2>/dev/null
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 50); do # until the simulator answers (5 s at most)
    curl -sf -o /dev/null "http://127.0.0.1:$SIM_PORT/sim/config" && break
    kill -0 "$sim" 2>/dev/null || { echo "kie-sim could not start on port $SIM_PORT (SIM_PORT=...)" >&2; exit 1; }
    sleep 0.1
done
HOST=127.0.0.1 PORT=$PORT KIE_BASE_URL=http://127.0.0.1:$SIM_PORT KIE_API_KEY=sim-key \
  KIE_UPLOAD_BASE_URL=http://127.0.0.1:$SIM_PORT PUBLIC_BASE_URL=http://127.0.0.1:$PORT ALLOW_PRIVATE_INPUT_URLS=1 ALLOW_PRIVATE_FETCH=1 \
  RATE_LIMIT_GENERATE=0 "$BIN/product-photo-api" serve &
server=$!
for _ in $(seq 100); do # print the URL only once the server listens
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz"; then
        echo "KIE simulator on http://127.0.0.1:$SIM_PORT (results are simulated; tasks take ~$((STEP_MS * 3 / 1000)) s)"
        echo "Open http://127.0.0.1:$PORT/ or follow the README's curl walkthrough."
        break
    fi
    kill -0 "$server" 2>/dev/null || exit 1 # its own message says why (e.g. the port is busy: PORT=...)
    sleep 0.1
done
wait "$server"
