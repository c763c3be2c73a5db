#!/usr/bin/env bash
# Browser end-to-end tests: starts kie-sim, a local S3 server (s3rver, tests/s3/s3-test-server.sh) and eleven
# product-photo-api instances (flow, no PUBLIC_BASE_URL, API_TOKEN, S3 mode, no KIE_API_KEY, history for the task
# list, nostore with TASK_STORE=off, three for the balance and the spending limits: credits, broke, daily with
# DAILY_GENERATION_LIMIT=1, and batch for the queue) on 127.0.0.1, runs the node:test
# suites in headless Debian Chromium (playwright-core, no browser download), stops everything.
# Usage: bash tests/browser/run.sh [FILE.test.mjs...]   (default: all; env: BUILD_DIR=build, CHROMIUM_PATH=/usr/bin/chromium,
#        WEB_DIR=web to serve the page from disk instead of the embedded copy)
# Output: TAP on stdout; screenshots build/browser-*.png (result, result-phone, s3, heic, compare, side, recent-phone,
#         queue, queue-done).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# the servers run from a temporary directory: a relative WEB_DIR means relative to the repo root
if [ -n "${WEB_DIR:-}" ]; then
  case "$WEB_DIR" in /*) ;; *) WEB_DIR="$root/$WEB_DIR" ;; esac
  [ -f "$WEB_DIR/index.html" ] || { echo "run.sh: WEB_DIR=$WEB_DIR has no index.html" >&2; exit 2; }
  export WEB_DIR
fi

for bin in "$build/kie-sim" "$build/product-photo-api"; do
  [ -x "$bin" ] || { echo "run.sh: $bin not built (run make first)" >&2; exit 2; }
done
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || {
  echo "run.sh: chromium missing: apt-get install -y --no-install-recommends chromium fonts-liberation" >&2; exit 2; }
command -v node >/dev/null || { echo "run.sh: node missing" >&2; exit 2; }
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ppa-browser.XXXXXX")"
pids=()
s3_state=""
cleanup() {
  local p
  [ -n "$s3_state" ] && S3_STATE="$s3_state" bash "$root/tests/s3/s3-test-server.sh" stop || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# wait_port FILE REGEX: prints the port once a line matching REGEX (with the port as last number) appears.
wait_port() {
  local file="$1" re="$2" pid="$3" port=""
  for _ in $(seq 1 100); do
    port="$(grep -Eo "$re" "$file" 2>/dev/null | grep -Eo '[0-9]+$' | head -n1 || true)"
    [ -n "$port" ] && { echo "$port"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run.sh: no '$re' from pid $pid; its output:" >&2
  cat "$file" "$file.err" >&2 2>/dev/null || true
  return 1
}
wait_healthy() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "$1/healthz" && return 0
    sleep 0.1
  done
  echo "run.sh: $1/healthz never answered 200" >&2
  return 1
}
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

"$build/kie-sim" --port 0 >"$tmp/sim.out" 2>"$tmp/sim.out.err" &
pids+=($!)
sim_port="$(wait_port "$tmp/sim.out" 'kie-sim listening on port [0-9]+' "${pids[-1]}")"
sim="http://127.0.0.1:$sim_port"

# KIE's file upload is the simulator's too: no test reaches KIE's real hosts
common=(HOST=127.0.0.1 KIE_BASE_URL="$sim" KIE_UPLOAD_BASE_URL="$sim" KIE_API_KEY=test-key ALLOW_PRIVATE_INPUT_URLS=1 ALLOW_PRIVATE_FETCH=1)
# Servers run from $tmp so that a developer's ./.env (PUBLIC_BASE_URL, API_TOKEN...) cannot leak in;
# variables the tests depend on are removed from the inherited environment.
clean=(-u PUBLIC_BASE_URL -u API_TOKEN -u USE_S3 -u MAX_UPLOAD_BYTES -u RATE_LIMIT_UPLOAD -u RATE_LIMIT_GENERATE
       -u S3_PREFIX -u KIE_UPLOAD -u S3_PUBLIC -u S3_PRESIGN_TTL -u AWS_SESSION_TOKEN -u AWS_DEFAULT_REGION -u CORS_ORIGINS
       -u DAILY_GENERATION_LIMIT -u S3_TASKS_PREFIX -u TASK_STORE)
# start_api NAME VAR=VALUE...: starts one server, sets $api_port.
start_api() {
  local name="$1"; shift
  mkdir -p "$tmp/up-$name"
  (cd "$tmp" && exec env "${clean[@]}" "${common[@]}" UPLOAD_DIR="$tmp/up-$name" "$@" \
      "$build/product-photo-api" >"$tmp/$name.out" 2>"$tmp/$name.out.err") &
  pids+=($!)
  api_port="$(wait_port "$tmp/$name.out" 'listening on port [0-9]+' "${pids[-1]}")"
  wait_healthy "http://127.0.0.1:$api_port"
}

# 1) flow server: a free port picked up front so PUBLIC_BASE_URL can point at the server itself
flow_port="$(free_port)"
start_api flow PORT="$flow_port" PUBLIC_BASE_URL="http://127.0.0.1:$flow_port"
[ "$api_port" = "$flow_port" ] || { echo "run.sh: flow server took port $api_port, not $flow_port" >&2; exit 1; }
# 2) no PUBLIC_BASE_URL and KIE_UPLOAD=never (the "KIE cannot download from localhost" case), ephemeral port
start_api nopublic PORT=0 KIE_UPLOAD=never
nopublic_port="$api_port"
# 3) API_TOKEN set: the page must ask for the token
start_api auth PORT=0 API_TOKEN=e2e-secret-token
auth_port="$api_port"
# 4) S3 mode against s3rver: the page asks /upload-url and PUTs the file straight to the bucket
s3_state="$tmp/s3"
s3_port="$(free_port)"
S3_PORT="$s3_port" S3_STATE="$s3_state" S3_BUCKET=page-bucket bash "$root/tests/s3/s3-test-server.sh" start >&2
start_api s3 PORT=0 USE_S3=1 S3_BUCKET=page-bucket AWS_REGION=us-east-1 S3_ENDPOINT="http://127.0.0.1:$s3_port" \
  S3_FORCE_PATH_STYLE=1 AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER MAX_UPLOAD_BYTES=4194304 \
  MAX_DIRECT_UPLOAD_BYTES=4194304
# (the Lambda templates' limit; the oversized-file test then hands Chromium 4 MiB, not 32, which timed out in CI
# on a loaded machine)
s3_api_port="$api_port"
# 5) no KIE_API_KEY (VAR= counts as unset): uploads work, the page must switch Generate off
start_api nokey PORT=0 KIE_API_KEY=
nokey_port="$api_port"
# 6) the task list and Idempotency-Key (tasks.test.mjs): its own task store, so that only its tests' tasks are
#    listed, and its own balance cache (a KIE 402 in another suite makes a server refuse for 30 s)
start_api history PORT=0
history_port="$api_port"
start_api nostore PORT=0 TASK_STORE=off
nostore_port="$api_port"
# 7-9) the KIE balance and the spending limits: each its own task store and balance cache (credits.test.mjs)
start_api credits PORT=0
credits_port="$api_port"
start_api broke PORT=0
broke_port="$api_port"
start_api daily PORT=0 DAILY_GENERATION_LIMIT=1
daily_port="$api_port"
# 10) the queue of many photos (batch.test.mjs): its own task store, balance cache and rate-limit buckets; 30
#     generations a minute (a bucket of 30, one more every 2 s), so its 429 test can empty it and watch it refill
start_api batch PORT=0 RATE_LIMIT_GENERATE=30
batch_port="$api_port"

mkdir -p "$build"
export E2E_SIM_BASE="$sim"
export E2E_FLOW_BASE="http://127.0.0.1:$flow_port"
export E2E_NOPUBLIC_BASE="http://127.0.0.1:$nopublic_port"
export E2E_AUTH_BASE="http://127.0.0.1:$auth_port" E2E_AUTH_TOKEN=e2e-secret-token
export E2E_NOKEY_BASE="http://127.0.0.1:$nokey_port"
export E2E_HISTORY_BASE="http://127.0.0.1:$history_port" E2E_NOSTORE_BASE="http://127.0.0.1:$nostore_port"
export E2E_CREDITS_BASE="http://127.0.0.1:$credits_port" E2E_BROKE_BASE="http://127.0.0.1:$broke_port"
export E2E_DAILY_BASE="http://127.0.0.1:$daily_port"
export E2E_BATCH_BASE="http://127.0.0.1:$batch_port"
export E2E_S3_BASE="http://127.0.0.1:$s3_api_port" E2E_S3_ORIGIN="http://127.0.0.1:$s3_port" E2E_S3_BUCKET=page-bucket
export E2E_OUT_DIR="$build"
echo "# kie-sim $E2E_SIM_BASE, servers: flow $E2E_FLOW_BASE, no-public $E2E_NOPUBLIC_BASE, auth $E2E_AUTH_BASE," \
  "s3 $E2E_S3_BASE (bucket $E2E_S3_ORIGIN/page-bucket), no-key $E2E_NOKEY_BASE, history $E2E_HISTORY_BASE," \
  "no-store $E2E_NOSTORE_BASE, credits $E2E_CREDITS_BASE, broke $E2E_BROKE_BASE, daily $E2E_DAILY_BASE," \
  "batch $E2E_BATCH_BASE"

rc=0
(cd "$here" && if [ "$#" -gt 0 ]; then set -- "$@"; else set -- ./*.test.mjs; fi
 node --test --test-concurrency=1 "$@") || rc=$?
if [ "$rc" -ne 0 ]; then
  mkdir -p "$build/browser-logs"
  cp "$tmp"/*.out "$tmp"/*.out.err "$build/browser-logs/" 2>/dev/null || true
  echo "run.sh: server logs kept in $build/browser-logs/" >&2
  cp "$s3_state/log" "$build/browser-logs/s3rver.log" 2>/dev/null || true
  for f in sim flow nopublic auth s3 nokey history nostore credits broke daily batch; do
    echo "---- $f stderr (last 40 lines) ----" >&2
    tail -n 40 "$tmp/$f.out.err" >&2 || true
  done
fi
exit "$rc"
