#!/usr/bin/env bash
# s3-test-server.sh install|start|stop|status|env
#
# A local S3 server that really checks SigV4 (@20minutes/s3rver 4.0.4, pinned in
# package-lock.json), bound to 127.0.0.1 only. Use path-style URLs with it.
#   S3_PORT   port to listen on              (default 4569)
#   S3_BUCKET bucket created at start         (default test-bucket, CORS from cors.xml)
#   S3_STATE  directory for data, log and pid (default /tmp/s3-test-server)
# Credentials: S3RVER / S3RVER (built in); S3_EXTRA_ACCESS_KEY/S3_EXTRA_SECRET_KEY add a pair.
# Typical CI use:
#   tests/s3/s3-test-server.sh start && trap 'tests/s3/s3-test-server.sh stop' EXIT
#   eval "$(tests/s3/s3-test-server.sh env)"
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${S3_STATE:-/tmp/s3-test-server}
PORT=${S3_PORT:-4569}
BUCKET=${S3_BUCKET:-test-bucket}

alive() { [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; }

case "${1:-}" in
  install)
    cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error ;;
  start)
    case "$PORT" in ''|*[!0-9]*) echo "S3_PORT must be a number" >&2; exit 2 ;; esac
    if alive; then echo "already running (pid $(cat "$STATE/pid")); stop it first" >&2; exit 1; fi
    [ -d "$HERE/node_modules/@20minutes/s3rver" ] || "$0" install
    mkdir -p "$STATE"
    rm -rf "$STATE/data"; mkdir -p "$STATE/data"
    # --openssl-legacy-provider: s3rver makes ListObjectsV2 continuation tokens with DES, which
    # OpenSSL 3 only has in its legacy provider (without it a truncated listing is a 500).
    nohup node --openssl-legacy-provider "$HERE/s3rver-launch.js" "$STATE/data" "$PORT" "$BUCKET" "$HERE/cors.xml" \
      >"$STATE/log" 2>&1 &
    echo $! >"$STATE/pid"
    for _ in $(seq 1 100); do   # up to ~10 s; an anonymous GET / (ListBuckets) answers 200
      if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; then
        echo "s3rver up on http://127.0.0.1:$PORT bucket=$BUCKET pid=$(cat "$STATE/pid")"; exit 0
      fi
      alive || { echo "s3rver died:" >&2; cat "$STATE/log" >&2; rm -f "$STATE/pid"; exit 1; }
      sleep 0.1
    done
    echo "s3rver not ready after 10 s" >&2; cat "$STATE/log" >&2; "$0" stop; exit 1 ;;
  stop)
    [ -f "$STATE/pid" ] || exit 0
    pid=$(cat "$STATE/pid"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true; rm -f "$STATE/pid" ;;
  status)
    if alive; then echo "running pid=$(cat "$STATE/pid") port=$PORT"; else echo "stopped"; exit 1; fi ;;
  env)
    echo "export S3_ENDPOINT=http://127.0.0.1:$PORT S3_BUCKET=$BUCKET S3_REGION=us-east-1 S3_ACCESS_KEY=S3RVER S3_SECRET_KEY=S3RVER S3_DATA_DIR=$STATE/data" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
