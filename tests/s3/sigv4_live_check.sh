#!/usr/bin/env bash
# sigv4_live_check.sh - build tests/unit/s3_live.c and run it against a RUNNING S3 server.
# Starts nothing. Needs S3_ENDPOINT S3_BUCKET S3_REGION S3_ACCESS_KEY S3_SECRET_KEY, e.g.:
#   tests/s3/s3-test-server.sh start && trap 'tests/s3/s3-test-server.sh stop' EXIT
#   eval "$(tests/s3/s3-test-server.sh env)"
#   tests/s3/sigv4_live_check.sh            # prints "N passed, N failed", exit 1 on failure
# BUILD_DIR (default build/) receives the s3_live binary; CC and SANITIZE=1 are honoured.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
: "${S3_ENDPOINT:?run: eval \"\$(tests/s3/s3-test-server.sh env)\"}"
: "${S3_BUCKET:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"
case "$S3_ENDPOINT" in
  http://127.0.0.1:*|http://localhost:*) ;;
  *) echo "refusing non-loopback endpoint $S3_ENDPOINT" >&2; exit 2 ;;
esac
[ -x /usr/bin/aws ] || { echo "/usr/bin/aws (aws-cli v2) is required" >&2; exit 2; }

mkdir -p "$BUILD_DIR"
FLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wconversion -O2 -I"$ROOT/include")
if [ "${SANITIZE:-0}" = 1 ]; then FLAGS+=(-g -fsanitize=address,undefined -fno-sanitize-recover=all); fi
# shellcheck disable=SC2046
"${CC:-cc}" "${FLAGS[@]}" "$ROOT/tests/unit/s3_live.c" "$ROOT/src/s3.c" "$ROOT/src/sigv4.c" "$ROOT/src/sigv4_canon.c" \
  "$ROOT/src/hex.c" $(pkg-config --cflags --libs libcurl libcrypto) -o "$BUILD_DIR/s3_live"
export S3_REGION=${S3_REGION:-us-east-1}
exec "$BUILD_DIR/s3_live"
