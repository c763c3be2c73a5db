#!/usr/bin/env bash
# run-sim.sh BINDIR - `make sim`: the whole flow on this machine without a KIE
# account. Starts the KIE simulator on 127.0.0.1:$SIM_PORT (default 8001) and
# the server on 127.0.0.1:$PORT (default 8000) pointed at it, with
# PUBLIC_BASE_URL=http://127.0.0.1:$PORT so the simulator can fetch uploads.
# Ctrl-C stops both.
set -euo pipefail
BIN=${1:-build}
PORT=${PORT:-8000}
SIM_PORT=${SIM_PORT:-8001}
STEP_MS=${SIM_STEP_MS:-2000}

"$BIN/kie-sim" --port "$SIM_PORT" --api-key sim-key --step-ms "$STEP_MS" &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT INT TERM
sleep 0.3
kill -0 "$sim" 2>/dev/null || { echo "kie-sim could not start on port $SIM_PORT" >&2; exit 1; }
echo "KIE simulator on http://127.0.0.1:$SIM_PORT (tasks take ~$((STEP_MS * 3 / 1000)) s)"
echo "Open http://127.0.0.1:$PORT/ or follow the README's curl walkthrough."
HOST=127.0.0.1 PORT=$PORT KIE_BASE_URL=http://127.0.0.1:$SIM_PORT KIE_API_KEY=sim-key \
  PUBLIC_BASE_URL=http://127.0.0.1:$PORT ALLOW_PRIVATE_INPUT_URLS=1 \
  "$BIN/product-photo-api" serve
