#!/usr/bin/env bash
# run.sh - S3 suite: start the SigV4-checking S3 server on loopback, run the
# builder's live check and the S3 task store's (build/taskstore_live, with the
# server's conditional-PUT shim) against it, stop the server (also on failure).
#   S3_PORT (default 4569), S3_STATE (default /tmp/s3-test-server) as in s3-test-server.sh.
#   TASKSTORE_LIVE: the task store driver (make test-s3 builds it; default build/taskstore_live).
# PPA_BIN / KIE_SIM_BIN (passed by `make test-s3`) are for product-level S3
# end-to-end checks, which are not part of this script yet.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LIVE=${TASKSTORE_LIVE:-$HERE/../../build/taskstore_live}
[ -x "$LIVE" ] || { echo "$LIVE is missing: make build/taskstore_live" >&2; exit 2; }
"$HERE/s3-test-server.sh" start
trap '"$HERE/s3-test-server.sh" stop' EXIT
eval "$("$HERE/s3-test-server.sh" env)"
"$HERE/sigv4_live_check.sh"
echo "== task store (taskstore_s3*.c) against s3rver"
"$LIVE"
