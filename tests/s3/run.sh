#!/usr/bin/env bash
# run.sh - S3 suite: start the SigV4-checking S3 server on loopback, run the
# builder's live check against it, stop the server (also on failure).
#   S3_PORT (default 4569), S3_STATE (default /tmp/s3-test-server) as in s3-test-server.sh.
# PPA_BIN / KIE_SIM_BIN (passed by `make test-s3`) are for product-level S3
# end-to-end checks, which are not part of this script yet.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/s3-test-server.sh" start
trap '"$HERE/s3-test-server.sh" stop' EXIT
eval "$("$HERE/s3-test-server.sh" env)"
"$HERE/sigv4_live_check.sh"
