#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] - build every libFuzzer target into build/fuzz/
# and run each for SECONDS (default 60) on a throw-away COPY of its seed
# corpus (tests/fuzz/corpus/<name>/ is never grown). Prints, per target, the
# executions and exec/s from libFuzzer's final stats and the findings.
# Exit 1 on any crash, leak, timeout or out-of-memory finding (the input is
# kept in build/fuzz/artifacts/<name>/ and the log in build/fuzz/logs/).
#
#   FUZZ_TARGETS="url sigv4" bash tests/fuzz/run.sh 30   # a subset
set -uo pipefail
cd "$(dirname "$0")/../.."
# one known library leak is suppressed (tests/fuzz/lsan.supp says which and why)
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

SECONDS_EACH=${1:-60}
TARGETS=${FUZZ_TARGETS:-generate url kie_answer sigv4 multipart image http}
OUT=build/fuzz

case "$SECONDS_EACH" in '' | *[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;; esac

# shellcheck disable=SC2086
bash tests/fuzz/build.sh $TARGETS || { echo "fuzz: build failed" >&2; exit 1; }

extra_opts() {
    case "$1" in
    multipart) echo "-max_len=24576 -timeout=30" ;; # two loopback requests per input
    http) echo "-max_len=8192 -timeout=30 -dict=tests/fuzz/http.dict" ;; # one loopback connection per input
    image) echo "-max_len=65536 -timeout=20 -rss_limit_mb=1024" ;; # decoders: bounded by the pixel limit
    *) echo "-timeout=10" ;;
    esac
}

stat_of() { # stat_of LOG NAME -> value of "stat::NAME:" (last one)
    sed -n "s/^stat::$2: *//p" "$1" | tail -n 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/ppa-fuzz-run-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT/logs"
# run_one NAME: fuzz one target; writes its summary line to $work/NAME.line and
# exits non-zero on a finding.
run_one() {
    local t=$1 log art dict rc execs rate newu findings status line
    log=$OUT/logs/$t.log
    art=$OUT/artifacts/$t
    mkdir -p "$art" "$work/$t" "$work/tmp-$t"
    if [ "$t" = image ]; then # made from Debian tools, not checked in
        bash tests/fuzz/seed_image.sh "$OUT/seeds/image" && cp -R "$OUT/seeds/image/." "$work/$t/"
    else
        cp -R "tests/fuzz/corpus/$t/." "$work/$t/"
    fi
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    echo "== fuzz_$t for ${SECONDS_EACH}s"
    # TMPDIR: fuzz_multipart's UPLOAD_DIRs, removed with $work even after a crash
    # shellcheck disable=SC2046
    TMPDIR="$work/tmp-$t" "$OUT/fuzz_$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 $(extra_opts "$t") \
        $dict -artifact_prefix="$art/" "$work/$t" >"$log" 2>&1
    rc=$?
    execs=$(stat_of "$log" number_of_executed_units)
    rate=$(stat_of "$log" average_exec_per_sec)
    newu=$(stat_of "$log" new_units_added)
    findings=$(grep -ac "Test unit written to" "$log")
    status=ok
    if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
        status=FAIL
        grep -aE "^(==[0-9]+==ERROR|SUMMARY|fuzz check failed|.*runtime error)" "$log" | head -n 5
        grep -a "Test unit written to" "$log"
    fi
    line=$(printf "%-11s %-4s executions=%-10s exec/s=%-7s new_units=%-6s findings=%s (rc %s, log %s)" \
        "$t" "$status" "${execs:-?}" "${rate:-?}" "${newu:-?}" "$findings" "$rc" "$log")
    echo "$line"
    echo "$line" >"$work/$t.line"
    [ "$status" = ok ]
}

# FUZZ_JOBS targets run side by side (CI uses the machine's 2 cores).
JOBS=${FUZZ_JOBS:-1}
failed=0
running=0
for t in $TARGETS; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
summary=""
for t in $TARGETS; do
    summary="$summary$(cat "$work/$t.line" 2>/dev/null || echo "$t: no result")"$'\n'
done
echo
echo "fuzz summary (${SECONDS_EACH}s per target):"
printf "%s" "$summary"
exit $failed
