#!/usr/bin/env bash
# batch.sh BUILD_DIR - the wall time of a 30-photo `generate` batch at --jobs 1 and --jobs 8.
#
# Starts the KIE simulator (BUILD_DIR/kie-sim) with KIE's rate limit on (20 createTask per 10 s per key) and
# each task state lasting BENCH_STEP_MS (150 ms, the simulator's default: waiting, queuing, generating), and our
# server (BUILD_DIR/product-photo-api) pointed at it with its own per-IP limits off, makes 30 small JPEGs per
# run with Pillow (distinct per run, so no run resumes another's tasks), and runs
#   product-photo-api generate DIR --prompt ... -o OUT --jobs N      (PPA_POLL_MS=BENCH_POLL_MS, 200 ms)
# once per N. The simulator's rate-limit window is emptied between the runs. Prints two lines:
#   batch jobs=1 wall_s=X
#   batch jobs=8 wall_s=Y
# (at 20 creates per 10 s, 30 photos cannot take less than 10 s however many jobs run). Loopback only.
set -euo pipefail
BUILD=$(cd "${1:?usage: bench/batch.sh BUILD_DIR}" && pwd)
PY=/usr/bin/python3
STEP_MS=${BENCH_STEP_MS:-150}
POLL_MS=${BENCH_POLL_MS:-200}
N=30
WORK=$(mktemp -d /tmp/ppa-bench-batch.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "batch.sh: $*" >&2; exit 1; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {
    local _
    for _ in $(seq 200); do curl -s -m 1 -o /dev/null "$1" && return 0; sleep 0.05; done
    die "nothing answers at $1"
}

SIM_PORT=$(free_port)
"$BUILD/kie-sim" --port "$SIM_PORT" --api-key bench-key --step-ms "$STEP_MS" --rate-limit 1 \
    >"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$SIM_PORT/sim/config"

PORT=$(free_port)
mkdir -p "$WORK/uploads" "$WORK/cwd"
(cd "$WORK/cwd" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT="$PORT" UPLOAD_DIR="$WORK/uploads" \
    KIE_API_KEY=bench-key KIE_BASE_URL="http://127.0.0.1:$SIM_PORT" KIE_UPLOAD_BASE_URL="http://127.0.0.1:$SIM_PORT" \
    PUBLIC_BASE_URL="http://127.0.0.1:$PORT" ALLOW_PRIVATE_INPUT_URLS=1 ALLOW_PRIVATE_FETCH=1 \
    RATE_LIMIT_GENERATE=0 RATE_LIMIT_UPLOAD=0 MIN_FREE_DISK_MB=0 LOG_LEVEL=warn \
    "$BUILD/product-photo-api" serve) >"$WORK/server.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$PORT/healthz"

for jobs in 1 8; do
    "$PY" - "$WORK/in-$jobs" "$N" "$jobs" <<'PYEOF'
import os, sys
from PIL import Image
d, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d)
for i in range(n):
    w, h = 160 + i + 40 * seed, 120
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 7 + seed * 50) % 256, (y * 5 + i * 9) % 256, 160) for y in range(h) for x in range(w)])
    im.save(os.path.join(d, f"photo{i:02d}.jpg"), "JPEG", quality=85)
PYEOF
    curl -s -m 5 -o /dev/null -X POST -d '{"rate_limit":1}' "http://127.0.0.1:$SIM_PORT/sim/config" # empty the window
    t0=$(date +%s%N)
    PPA_POLL_MS=$POLL_MS "$BUILD/product-photo-api" generate "$WORK/in-$jobs" --prompt "The product on white marble" \
        -o "$WORK/out-$jobs" --jobs "$jobs" --server "http://127.0.0.1:$PORT" >"$WORK/run-$jobs.out" 2>"$WORK/run-$jobs.err" \
        || die "the jobs=$jobs batch failed: $(tail -5 "$WORK/run-$jobs.err")"
    t1=$(date +%s%N)
    got=$(find "$WORK/out-$jobs" -name '*.png' | wc -l)
    [ "$got" -eq "$N" ] || die "the jobs=$jobs batch saved $got results, not $N"
    awk -v ns=$((t1 - t0)) -v j="$jobs" 'BEGIN { printf "batch jobs=%d wall_s=%.1f\n", j, ns / 1e9 }'
done
