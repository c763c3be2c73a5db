#!/usr/bin/env bash
# Runs every infra check (route consistency, IaC parse + structure, container start command, and the
# real tools: terraform fmt/validate/apply+destroy against a local moto_server, cfn-lint) and prints
# "N passed, N failed". Exit status 0 only if nothing failed. Needs node >= 18 and build/product-photo-api
# (run `make` first; PPA_BIN=/path overrides). Installs the two npm packages with `npm ci` on first use.
set -u -o pipefail
cd "$(dirname "$0")" || exit 2
if [ ! -d node_modules/@cdktf/hcl2json ] || [ ! -d node_modules/yaml-cfn ]; then
  npm ci --no-audit --no-fund --loglevel=error || { echo "npm ci failed"; echo "0 passed, 1 failed"; exit 1; }
fi
out=$(mktemp) || exit 2
trap 'rm -f "$out"' EXIT
status=0
for t in check_routes.js check_iac.js check_container.js check_tools.sh; do
  echo "== $t"
  case $t in
    *.sh) bash "$t" 2>&1 | tee -a "$out" ;;
    *) node "$t" 2>&1 | tee -a "$out" ;;
  esac
  rc=$?
  # a crash (non-zero exit without any FAIL line) still counts as a failure
  [ "$rc" -eq 0 ] || status=1
done
passed=$(grep -c '^PASS ' "$out")
failed=$(grep -c '^FAIL ' "$out")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
