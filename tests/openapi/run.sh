#!/usr/bin/env bash
# tests/openapi/run.sh - lint the OpenAPI document the real binary serves (GET /openapi.json) with
# Redocly's recommended rules (@redocly/cli from npm, pinned in package-lock.json; redocly.yaml says why
# one rule is off). Clean means no error and no warning. Prints "N passed, N failed".
# Needs node/npm and build/product-photo-api (PPA_BIN overrides). Loopback only; Redocly's telemetry and
# update check are off.
set -u -o pipefail
cd "$(dirname "$0")" || exit 2
BIN=${PPA_BIN:-../../build/product-photo-api}
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
passed=0
failed=0
check() { # check NAME CMD...: PASS/FAIL line
    local name=$1
    shift
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}
if [ ! -x node_modules/.bin/redocly ]; then
    npm ci --no-audit --no-fund --loglevel=error || { echo "npm ci failed"; echo "0 passed, 1 failed"; exit 1; }
fi
work=$(mktemp -d)
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work" "$dir"' EXIT
(cd "$dir" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT=0 UPLOAD_DIR="$dir/u" LOG_LEVEL=warn "$BIN" serve) \
    >"$work/out" 2>"$work/err" &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/^listening on port //p' "$work/out")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { cat "$work/err"; echo "0 passed, 1 failed"; exit 1; }
curl -sf -o "$work/openapi.json" "http://127.0.0.1:$port/openapi.json"
check "GET /openapi.json answers the document" test -s "$work/openapi.json"
lint() {
    node_modules/.bin/redocly lint "$work/openapi.json" --config redocly.yaml --format=json >"$work/lint.json" \
        2>"$work/lint.err"
    node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const probs = r.problems || [];
      for (const p of probs) console.log(`  ${p.severity} ${p.ruleId}: ${p.message} (${(p.location[0] || {}).pointer || ""})`);
      process.exit(probs.length === 0 ? 0 : 1);' "$work/lint.json"
}
check "redocly lint (recommended rules): no error, no warning" lint
ops() { # every operation has an operationId, unique, and declares its security
    node -e '
      const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const seen = new Set(); let bad = 0;
      for (const [p, ops] of Object.entries(d.paths)) for (const [m, op] of Object.entries(ops)) {
        if (!op.operationId || seen.has(op.operationId) || !Array.isArray(op.security)) { console.log(`  ${m} ${p}`); bad++; }
        seen.add(op.operationId);
      }
      process.exit(bad ? 1 : 0);' "$work/openapi.json"
}
check "operationIds unique, security declared on every operation" ops
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
