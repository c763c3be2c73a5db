#!/usr/bin/env bash
# zip.sh - the GET /results.zip part of the benchmark: our streamed stored ZIP of kept results against
# `zip -0` (Info-ZIP, stored, writing the archive to a pipe) of the same files, in one run.
#
#   bash bench/zip.sh                   alone (~20 s); writes build/bench-zip.md and prints it
#   `make bench` runs it after the rest (bench/run.sh) and appends the table to the report
#
# Files: $ZIP_N (200) kept results of 1 MB each (random bytes from /dev/urandom: already "compressed", like the
# images) under UPLOAD_DIR/results/, and $ZIP_SMALL_N (50) more for the flatness check. Our server runs with
# TASK_STORE=off, so it answers from the kept files alone (no task records needed). For each of $ZIP_REPS
# repetitions: ours, one `curl -o /dev/null` of /results.zip?tasks=<all> (time_total, bytes; the server's VmHWM
# during it, reset through /proc/PID/clear_refs), then `zip -0 -q - <files> | cat >/dev/null` under
# /usr/bin/time (wall s, max RSS). The first archive of ours is read back with Python's zipfile (testzip: every
# CRC-32) and must hold the $ZIP_N entries.
# Targets: throughput >= 0.5x zip -0 (ours goes through HTTP and curl as well); peak RSS during the 200-result
# archive <= the 50-result one + 4 MB (memory flat in the number of results).
#
# Settings (environment): ZIP_N=200 ZIP_SMALL_N=50 ZIP_REPS=3 PPA_BIN=build/product-photo-api
#   BENCH_ZIP_OUT=build/bench-zip.md BENCH_UPLOAD_ROOT=/dev/shm
set -eEuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${PPA_BIN:-$ROOT/build/product-photo-api}
OUT=${BENCH_ZIP_OUT:-$ROOT/build/bench-zip.md}
N=${ZIP_N:-200}
SMALL_N=${ZIP_SMALL_N:-50}
REPS=${ZIP_REPS:-3}
UPLOAD_ROOT=${BENCH_UPLOAD_ROOT:-/dev/shm}
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

WORK='' UPLOADS='' PIDS=()
part_traps

reset_hwm() { echo 5 >"/proc/$OURS_PID/clear_refs" 2>/dev/null || die "cannot reset VmHWM (/proc/$OURS_PID/clear_refs)"; }

need zip curl awk /usr/bin/time "$PY"
[[ -x $BIN ]] || die "no server binary at $BIN (make first)"
WORK=$(mktemp -d /tmp/ppa-bench-zip.XXXXXX)
UPLOADS=$(mktemp -d "$UPLOAD_ROOT/ppa-bench-zip.XXXXXX")
mkdir -p "$UPLOADS/zip/results"
log "making $((N + SMALL_N)) results of 1 MB"
IDS=() SMALL_IDS=()
for ((i = 0; i < N + SMALL_N; i++)); do
    id=$(printf 'bench-task-%04d' "$i")
    head -c 1048576 /dev/urandom >"$UPLOADS/zip/results/$id.jpg"
    if ((i < N)); then IDS+=("$id"); else SMALL_IDS+=("$id"); fi
done
ALL=$(IFS=,; echo "${IDS[*]}")
SMALL=$(IFS=,; echo "${SMALL_IDS[*]}")
# RESULTS_MAX_MB and RESULT_TTL_HOURS high enough that the sweeper keeps every file
start_ours zip http://127.0.0.1:9 TASK_STORE=off RESULTS_MAX_MB=100000 RESULT_TTL_HOURS=0 RATE_LIMIT_RESULTS=0

got=$(curl -sS --max-time 120 -o "$WORK/first.zip" -w '%{http_code}' "$OURS_URL/results.zip?tasks=$ALL")
[[ $got == 200 ]] || die "GET /results.zip answered $got: $(head -c 300 "$WORK/first.zip")"
CHECK=$("$PY" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
n = len(z.namelist())
print("ok" if bad is None and n == int(sys.argv[2]) and "MISSING.txt" not in z.namelist() else f"bad: {bad} {n} entries")' \
    "$WORK/first.zip" "$N")
[[ $CHECK == ok ]] || die "our archive does not read back: $CHECK"
rm -f "$WORK/first.zip"

declare -a OURS_S OURS_RSS ZIP_S ZIP_RSS SMALL_RSS
BYTES=0
for ((rep = 1; rep <= REPS; rep++)); do
    reset_hwm
    read -r code BYTES t < <(curl -sS --max-time 120 -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
        "$OURS_URL/results.zip?tasks=$ALL")
    [[ $code == 200 ]] || die "GET /results.zip answered $code"
    OURS_S+=("$t"); OURS_RSS+=("$(kib "$OURS_PID" VmHWM)")
    reset_hwm
    read -r code _ _ < <(curl -sS --max-time 120 -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
        "$OURS_URL/results.zip?tasks=$SMALL")
    [[ $code == 200 ]] || die "GET /results.zip ($SMALL_N) answered $code"
    SMALL_RSS+=("$(kib "$OURS_PID" VmHWM)")
    (cd "$UPLOADS/zip/results" && /usr/bin/time -f "%e %M" -o "$WORK/time" \
        bash -c 'zip -0 -q - "$@" | cat >/dev/null' zip "${IDS[@]/%/.jpg}")
    read -r s kb <"$WORK/time"
    ZIP_S+=("$s"); ZIP_RSS+=("$kb")
    log "rep $rep: ours ${t} s (${BYTES} B), zip -0 $s s"
done

o_s=$(echo "${OURS_S[*]}" | median | xargs printf "%.3f"); z_s=$(echo "${ZIP_S[*]}" | median | xargs printf "%.3f")
o_rss=$(echo "${OURS_RSS[*]}" | median); z_rss=$(echo "${ZIP_RSS[*]}" | median); s_rss=$(echo "${SMALL_RSS[*]}" | median)
o_mbs=$(awk -v b="$BYTES" -v s="$o_s" 'BEGIN { printf "%.0f", (s > 0) ? b / 1048576 / s : 0 }')
z_mbs=$(awk -v b="$BYTES" -v s="$z_s" 'BEGIN { printf "%.0f", (s > 0) ? b / 1048576 / s : 0 }')
{
    echo "### GET /results.zip: $N kept results of 1 MB (median of $REPS)"
    echo
    echo "| | wall s | MB/s | peak RSS MB |"
    echo "|---|---|---|---|"
    echo "| ours, GET /results.zip (curl to /dev/null) | $o_s | $o_mbs | $(mb "$o_rss") (the whole server; $(mb "$s_rss") for $SMALL_N results) |"
    echo "| anchor: zip -0 - files \| cat | $z_s | $z_mbs | $(mb "$z_rss") |"
    echo
    echo "| target | ours | anchor | verdict |"
    echo "|---|---|---|---|"
    echo "| throughput >= 0.5x zip -0 | $o_mbs MB/s | $z_mbs MB/s ($(ratio "$o_mbs" "$z_mbs")) | $(verdict ge "$o_mbs" "$(awk -v z="$z_mbs" 'BEGIN { print z / 2 }')") |"
    echo "| memory flat: peak RSS at $N results <= at $SMALL_N + 4 MB | $(mb "$o_rss") MB | $(mb "$s_rss") MB | $(verdict ge "$((s_rss + 4096))" "$o_rss") |"
    echo
    echo "Archive checked with Python's zipfile (testzip, $N entries): $CHECK."
} >"$OUT"
cat "$OUT"
