#!/usr/bin/env bash
# run.sh - the benchmark of product-photo-api (`make bench`): our server against the FastAPI reference
# (bench/anchor/, uvicorn 2 workers with TCP_NODELAY kept) and nginx, all on 127.0.0.1, in one run of ~2 min.
#
#   bash bench/run.sh            writes build/bench.md (and prints it)
#
# Scenarios (wrk -t$THREADS -c$CONNECTIONS -d$DURATION after a $WARMUP warm-up of the same command):
#   GET /files/<200 KB jpg>   ours, libmicrohttpd alone (bench/mhd_floor.c), nginx (sendfile), reference: the bytes
#                             ours stored for tests/fixtures' photo200k.jpg
#   GET /status?task_id=abc   ours, nginx proxy_pass, reference  (all proxy to a fast fake KIE: nginx answering
#                             fixed JSON; the nginx proxy is bench/proxy-nginx.conf: one worker, upstream keepalive);
#                             libmicrohttpd alone answering that JSON itself, and libcurl alone making the KIE call
#                             (bench/curl_floor.c): the stack floor
#   POST /generate            ours, nginx proxy_pass, reference  (same fake KIE)
#   POST /upload 1 MB         ours, reference  (upload dirs on tmpfs, pruned while wrk runs: see README)
# plus: start-up time to the first /healthz answer and idle RSS; peak RSS (VmHWM, reset through
# /proc/PID/clear_refs) of our server during one 1 MB and one 100 MB upload; 500 concurrent /status
# against a fake KIE that answers after 1 s (wall time, our thread count; the reference's too);
# then photo normalisation (bench/normalize.sh): ours against Pillow, ImageMagick and vipsthumbnail.
#
#   BENCH_ONLY=normalize bash bench/run.sh    only the normalisation part (= bash bench/normalize.sh)
#
# Settings (environment): DURATION=8s WARMUP=2s THREADS=2 CONNECTIONS=50 BURST_N=500 SLOW_MS=1000
#   BIG_MB=100  PPA_BIN=build/product-photo-api  BENCH_OUT=build/bench.md
#   BENCH_UPLOAD_ROOT=/dev/shm (where both servers store uploads; a disk path measures the disk too)
# Needs: nginx, wrk, curl, /usr/bin/python3 with python3-fastapi python3-uvicorn python3-multipart python3-httpx.
# Not a test: it never fails on a missed target, only on a broken set-up (a scenario that does not answer 2xx).
set -eEuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${PPA_BIN:-$ROOT/build/product-photo-api}
OUT=${BENCH_OUT:-$ROOT/build/bench.md}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
BURST_N=${BURST_N:-500}
SLOW_MS=${SLOW_MS:-1000}
BIG_MB=${BIG_MB:-100}
UPLOAD_ROOT=${BENCH_UPLOAD_ROOT:-/dev/shm}
FIXTURES=${BENCH_FIXTURES:-$ROOT/build/fixtures}
PY=/usr/bin/python3
BOUNDARY=----benchBoundary7MA4YWxkTrZu0gW
HZ=$(getconf CLK_TCK)
T_START=$(date +%s)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
case ${BENCH_ONLY:-} in
    '') ;;
    normalize) exec bash "$HERE/normalize.sh" ;;
    *) die "BENCH_ONLY=$BENCH_ONLY: the only part that runs alone is 'normalize'" ;;
esac

# ---------- bookkeeping: everything started here is stopped on exit ----------

WORK='' UPLOADS='' PIDS=() NGINX_PREFIXES=()

stop_nginx() {  # stop_nginx PREFIX: QUIT the master whose pid is in PREFIX/nginx.pid
    local p _
    p=$(cat "$1/nginx.pid" 2>/dev/null) || return 0
    kill -0 "$p" 2>/dev/null || return 0
    kill -QUIT "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -TERM "$p" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    for i in "${NGINX_PREFIXES[@]}"; do stop_nginx "$i"; done
    [[ -z $UPLOADS ]] || rm -rf "$UPLOADS"
    [[ -z $WORK ]] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "error: \"$BASH_COMMAND\" failed (line $LINENO)"' ERR

# ---------- processes, memory and CPU ----------

kie_requests() { curl -s --max-time 5 "$KIE_URL/nginx_status" | awk 'NR == 3 { print $3 }'; }

cpu_ticks() {  # cpu_ticks PID: user+system ticks of PID and its descendants so far
    local total=0 p stat f
    [[ -n ${1:-} ]] || { echo 0; return; }
    for p in $(pid_tree "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -ra f <<<"${stat##*) }"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

box_ticks() {  # "busy idle" ticks of the machine
    local _cpu user nice sys idle iowait irq softirq steal _rest
    read -r _cpu user nice sys idle iowait irq softirq steal _rest </proc/stat
    echo "$((user + nice + sys + irq + softirq + steal)) $((idle + iowait))"
}

# ---------- starting servers ----------

start_nginx() {  # start_nginx NAME CONF PORT [UPSTREAM_PORT]: nginx from bench/CONF with @PORT@ (and
                 # @UPSTREAM_PORT@) replaced, prefix $WORK/NAME
    local prefix=$WORK/$1
    mkdir -p "$prefix"
    sed "s/@PORT@/$3/; s/@UPSTREAM_PORT@/${4:-}/" "$HERE/$2" >"$prefix/nginx.conf"
    NGINX_PREFIXES+=("$prefix")
    nginx -p "$prefix/" -e "$prefix/error.log" -c "$prefix/nginx.conf" || die "nginx $1 did not start: $(tail -3 "$prefix/error.log")"
    wait_http "http://127.0.0.1:$3/"
}

REF_PID='' REF_URL='' REF_STARTUP_MS=''
start_ref() {  # start_ref NAME KIE_URL: the FastAPI reference, uvicorn_nodelay.py --workers 2, no access log
    local name=$1 kie=$2 port t0 t1; shift 2
    port=$(free_port)
    mkdir -p "$UPLOADS/$name"
    t0=$(date +%s%N)
    (cd "$HERE/anchor" && exec env -i PATH="$PATH" PYTHONDONTWRITEBYTECODE=1 KIE_API_KEY=bench-key KIE_BASE_URL="$kie" \
        KIE_MODEL=flux-2/pro-image-to-image UPLOAD_DIR="$UPLOADS/$name" \
        "$PY" uvicorn_nodelay.py app:app --host 127.0.0.1 --port "$port" --workers 2 \
        --loop asyncio --http h11 --no-access-log --log-level warning) >"$WORK/$name.log" 2>&1 &
    REF_PID=$!
    PIDS+=("$REF_PID")
    REF_URL=http://127.0.0.1:$port
    for _ in $(seq 3000); do
        curl -s --max-time 1 -o /dev/null "$REF_URL/openapi.json" && break
        kill -0 "$REF_PID" 2>/dev/null || die "the reference ($name) died: $(tail -5 "$WORK/$name.log")"
    done
    t1=$(date +%s%N)
    REF_STARTUP_MS=$(((t1 - t0) / 1000000))
    sleep 2   # the first answer comes from one worker; let the other finish starting
    log "reference ($name) up: pid $REF_PID, $REF_URL, first answer after $REF_STARTUP_MS ms"
}

# ---------- test files ----------

prepare() {
    local spec name size
    # the /files body: a real ~200 KB photo (tests/fixtures/make_images.py), so it stays ~200 KB when /upload
    # re-encodes it; what our server stored is then what every server serves (FILES_BODY)
    "$PY" "$ROOT/tests/fixtures/make_images.py" "$FIXTURES" --only photo200k.jpg >/dev/null || die "make_images.py failed"
    cp "$FIXTURES/photo200k.jpg" "$WORK/bench-200k.jpg"
    for spec in bench-1m.jpg:1048576 "bench-${BIG_MB}m.jpg:$((BIG_MB * 1048576))"; do
        name=${spec%%:*} size=${spec##*:}
        "$PY" "$HERE/mkjpeg.py" "$WORK/$name" "$size"
    done
    if grep -q -a -F -- "$BOUNDARY" "$WORK/bench-1m.jpg"; then die "boundary occurs in bench-1m.jpg; run again"; fi
    {
        printf -- '--%s\r\nContent-Disposition: form-data; name="file"; filename="bench-1m.jpg"\r\n' "$BOUNDARY"
        printf 'Content-Type: image/jpeg\r\n\r\n'
        cat "$WORK/bench-1m.jpg"
        printf -- '\r\n--%s--\r\n' "$BOUNDARY"
    } >"$WORK/upload-1m.body"
    printf '{"input_url":"http://127.0.0.1:9/files/bench.jpg","prompt":"High-end product photography, keep props","aspect_ratio":"4:3","resolution":"1K"}' \
        >"$WORK/generate.json"
}

check_2xx() {  # check_2xx DESC CURL_ARGS...: one request like the scenario's; must answer 2xx
    local desc=$1 code; shift
    code=$(curl -sS --max-time 30 -o "$WORK/check.out" -w '%{http_code}' "$@") || die "$desc: curl failed"
    [[ $code == 2?? ]] || die "$desc: answered HTTP $code: $(head -c 300 "$WORK/check.out")"
}

FILES_BODY='' FILES_BYTES=''
check_file() {  # check_file URL: 200 and the FILES_BODY's size
    local got; got=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code} %{size_download}' "$1") || die "GET $1 failed"
    [[ $got == "200 $FILES_BYTES" ]] || die "GET $1 answered '$got', expected 200 and $FILES_BYTES bytes"
}

upload_200k() {  # upload_200k BASE [FILE]: POST the 200 KB jpg (or FILE), echo the /files path from the answer
    local path
    check_2xx "POST /upload (200 KB)" -F "file=@${2:-$WORK/bench-200k.jpg};type=image/jpeg" "$1/upload"
    path=$(sed -n 's/.*"url" *: *"\(\/files\/[^"]*\)".*/\1/p' "$WORK/check.out")
    [[ -n $path ]] || die "/upload answered without a /files url: $(head -c 300 "$WORK/check.out")"
    echo "$path"
}

# ---------- measuring ----------

declare -A RPS P50 P99 ERRS CPU KIE_PER_REQ USPR
PRUNE_PID=''

prune_start() {  # prune_start DIR: every 0.5 s delete stored uploads (not spool files) older than 0.5-1 s
    local dir=$1
    rm -f "$WORK/.prune-stop"
    (
        touch "$WORK/.prune-old"; sleep 0.5; touch "$WORK/.prune-new"
        while [[ ! -e $WORK/.prune-stop ]]; do
            find "$dir" -maxdepth 1 -type f ! -name '.*' ! -newer "$WORK/.prune-old" -delete 2>/dev/null || true
            mv -f "$WORK/.prune-new" "$WORK/.prune-old"; touch "$WORK/.prune-new"
            sleep 0.5
        done
    ) &
    PRUNE_PID=$!
    PIDS+=("$PRUNE_PID")
}
prune_stop() {  # asks the pruner to finish its round and waits for it (so no two deleters race)
    local _
    [[ -n $PRUNE_PID ]] || return 0
    touch "$WORK/.prune-stop"
    for _ in $(seq 100); do kill -0 "$PRUNE_PID" 2>/dev/null || break; sleep 0.05; done
    forget_pid "$PRUNE_PID"
    PRUNE_PID=''
}

# measure KEY SERVER_PID URL SCRIPT [UPSTREAM_PID]: warm-up + one wrk run; fills RPS/P50/P99/ERRS/CPU/KIE_PER_REQ[KEY]
measure() {
    local key=$1 spid=$2 url=$3 script=$4 upid=${5:-}
    local wlog=$WORK/${key// /-}.wrk tlog=$WORK/${key// /-}.time
    local args=(-t "$THREADS" -c "$CONNECTIONS" --timeout 10s -s "$HERE/$script")
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        wrk "${args[@]}" -d "$WARMUP" "$url" >"${wlog%.wrk}.warmup" 2>&1 || die "$key: wrk warm-up failed"
    fi
    local s0 u0 b0 i0 t0 t1 s1 u1 b1 i1 k0=0 k1=0
    [[ -z $upid ]] || k0=$(kie_requests)
    s0=$(cpu_ticks "$spid"); u0=$(cpu_ticks "$upid"); read -r b0 i0 < <(box_ticks)
    t0=$(date +%s.%N)
    local TIMEFORMAT='%3U %3S'
    { time wrk "${args[@]}" -d "$DURATION" "$url" >"$wlog" 2>&1; } 2>"$tlog" || die "$key: wrk failed: $(tail -3 "$wlog")"
    t1=$(date +%s.%N)
    s1=$(cpu_ticks "$spid"); u1=$(cpu_ticks "$upid"); read -r b1 i1 < <(box_ticks)
    [[ -z $upid ]] || k1=$(kie_requests)
    local res kv; res=$(grep '^BENCHRESULT' "$wlog") || die "$key: no result line from wrk ($wlog)"
    local -A r
    for kv in ${res#BENCHRESULT }; do r[${kv%%=*}]=${kv#*=}; done
    RPS[$key]=${r[rps]}
    P50[$key]=$(awk -v us="${r[p50_us]}" 'BEGIN { printf "%.2f", us / 1000 }')
    P99[$key]=$(awk -v us="${r[p99_us]}" 'BEGIN { printf "%.2f", us / 1000 }')
    ERRS[$key]=$((r[non2xx] + r[connect] + r[read] + r[write] + r[timeout]))
    # server CPU per answered request (less sensitive to other load on the box than req/s)
    USPR[$key]=$(awk -v s="$((s1 - s0))" -v hz="$HZ" -v n="${r[requests]}" 'BEGIN { printf "%.0f", n ? 1e6 * s / hz / n : 0 }')
    # upstream calls per answered request: ~1.00 when every request really went to the fake KIE
    KIE_PER_REQ[$key]=-
    [[ -z $upid ]] || KIE_PER_REQ[$key]=$(awk -v k="$((k1 - k0 - 1))" -v n="${r[requests]}" 'BEGIN { printf "%.2f", n ? k / n : 0 }')
    CPU[$key]=$(awk -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v s="$((s1 - s0))" -v u="$((u1 - u0))" -v up="$upid" \
        -v wu="$(cut -d' ' -f1 "$tlog")" -v ws="$(cut -d' ' -f2 "$tlog")" -v b="$((b1 - b0))" -v i="$((i1 - i0))" \
        -v cores="$(nproc)" 'BEGIN { w = t1 - t0
            srv = 100 * s / hz / w; wrk = 100 * (wu + ws) / w; kie = 100 * u / hz / w
            idle = 100 * cores * i / (b + i); other = 100 * cores - idle - srv - wrk - kie
            printf "%.0f / %.0f / %s / %.0f / %.0f", srv, wrk, up == "" ? "-" : sprintf("%.0f", kie),
                   other < 0 ? 0 : other, idle }')
    log "$key: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, errors ${ERRS[$key]}, srv CPU ${USPR[$key]} us/req, KIE calls/req ${KIE_PER_REQ[$key]}, CPU srv/wrk/kie/other/idle ${CPU[$key]}"
    ((ERRS[$key] == 0)) || log "warning: $key: non-2xx or socket errors: $(grep -E 'Non-2xx|Socket errors' "$wlog" | tr '\n' ' ')"
}

# scenario KIND NAME BASE PID [FILES_URL]: one wrk scenario against one server
scenario() {
    local kind=$1 n=$2 base=$3 pid=$4
    case $kind in
        files)
            check_file "$5"
            measure "$n files" "$pid" "$5" common.lua ;;
        status)
            check_2xx "$n GET /status" "$base/status?task_id=abc"
            measure "$n status" "$pid" "$base/status?task_id=abc" common.lua "$KIE_PID" ;;
        generate)
            check_2xx "$n POST /generate" -H 'Content-Type: application/json' --data-binary "@$WORK/generate.json" "$base/generate"
            BENCH_BODY=$WORK/generate.json measure "$n generate" "$pid" "$base/generate" generate.lua "$KIE_PID" ;;
        upload)
            check_2xx "$n POST /upload (1 MB)" -H "Content-Type: multipart/form-data; boundary=$BOUNDARY" \
                --data-binary "@$WORK/upload-1m.body" "$base/upload"
            prune_start "$UPLOADS/$n"
            BENCH_BODY=$WORK/upload-1m.body BENCH_BOUNDARY=$BOUNDARY measure "$n upload" "$pid" "$base/upload" upload.lua
            prune_stop
            find "$UPLOADS/$n" -maxdepth 1 -type f -newer "$WORK/upload-1m.body" -size +900k -delete 2>/dev/null || true ;;
    esac
}

# one_upload BASE PID FILE: one curl -F upload; echoes "seconds rss_before_kib peak_kib peak_largest_kib"
one_upload() {
    local base=$1 pid=$2 file=$3 p pids before peak=0 largest=0 hwm out code t name got size
    pids=$(pid_tree "$pid")
    before=$(tree_kib "$pid" VmRSS)
    for p in $pids; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || die "cannot reset VmHWM of $p (/proc/$p/clear_refs)"; done
    out=$(curl -sS --max-time 300 -o "$WORK/one.out" -w '%{http_code} %{time_total}' -F "file=@$file;type=image/jpeg" "$base/upload") \
        || die "upload of $file failed"
    read -r code t <<<"$out"
    [[ $code == 2?? ]] || die "upload of $file answered HTTP $code: $(head -c 300 "$WORK/one.out")"
    for p in $pids; do hwm=$(kib "$p" VmHWM); peak=$((peak + hwm)); ((hwm <= largest)) || largest=$hwm; done
    name=$(sed -n 's/.*"url" *: *"\(\/files\/[^"]*\)".*/\1/p' "$WORK/one.out")
    # what was stored: the answer's size (a server that re-encodes stores less than it got), else the file's
    # (the first "size": the stored file's; "original" has one of its own)
    size=$(grep -o '"size" *: *[0-9][0-9]*' "$WORK/one.out" | head -n 1 | grep -o '[0-9][0-9]*$' || true)
    size=${size:-$(stat -c %s "$file")}
    got=$(curl -sS --max-time 120 -o /dev/null -w '%{http_code} %{size_download}' "$base$name")
    [[ $got == "200 $size" ]] || die "GET $name after the upload answered '$got', expected 200 $size"
    echo "$t $before $peak $largest"
}

# burst NAME BASE PID: BURST_N concurrent GET /status; sets BURST_LINE and BURST_THREADS (max sampled)
burst() {
    local base=$2 pid=$3 sampler
    check_2xx "$1 GET /status (slow KIE)" "$base/status?task_id=abc"
    echo 0 >"$WORK/threads.max"
    (   max=0
        while kill -0 "$pid" 2>/dev/null; do
            n=$(tree_threads "$pid"); ((n <= max)) || { max=$n; echo "$max" >"$WORK/threads.max"; }
            sleep 0.05
        done ) &
    sampler=$!
    PIDS+=("$sampler")
    BURST_IDLE_THREADS=$(tree_threads "$pid")
    BURST_LINE=$("$PY" "$HERE/burst.py" "$base/status?task_id=abc" "$BURST_N" 120)
    forget_pid "$sampler"
    BURST_THREADS=$(cat "$WORK/threads.max")
    log "$1: $BURST_LINE, threads idle $BURST_IDLE_THREADS, max during the burst $BURST_THREADS"
}
bval() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# curl_floor: bench/curl_floor.c against the fake KIE's recordInfo (a warm-up, then DURATION); sets
# CURL_FLOOR_CPS (calls/s) and CURL_FLOOR_US (its CPU µs per call)
CURL_FLOOR_CPS='' CURL_FLOOR_US=''
curl_floor() {
    local url="$KIE_URL/api/v1/jobs/recordInfo?taskId=abc" secs line
    secs=$(awk -v d="${DURATION%s}" 'BEGIN { print d + 0 }')
    "$WORK/curl-floor" "$url" "$CONNECTIONS" "$(awk -v d="${WARMUP%s}" 'BEGIN { print (d > 0 ? d : 1) }')" >/dev/null ||
        die "curl_floor warm-up failed"
    line=$("$WORK/curl-floor" "$url" "$CONNECTIONS" "$secs") || die "curl_floor failed: $line"
    CURL_FLOOR_US=$(bval "$line" cpu_us_per_call)
    CURL_FLOOR_CPS=$(awk -v n="$(bval "$line" calls)" -v s="$(bval "$line" seconds)" 'BEGIN { printf "%.1f", n / s }')
    log "libcurl alone: $CURL_FLOOR_CPS calls/s, $CURL_FLOOR_US µs CPU per call"
}

# ---------- the run ----------

need nginx wrk curl awk "$PY"
"$PY" -c 'import fastapi, uvicorn, multipart, httpx' 2>/dev/null ||
    die "the reference needs Debian's python3-fastapi python3-uvicorn python3-multipart python3-httpx"
if [[ ! -x $BIN ]]; then log "building $BIN"; make -C "$ROOT" --no-print-directory all >&2; fi
[[ -x $BIN ]] || die "no server binary at $BIN"
DEF_PER_IP=$(cfg_default PER_IP_CONNECTIONS); DEF_PER_IP=${DEF_PER_IP:-0}
DEF_KIE_MAX=$(cfg_default KIE_MAX_CONNECTIONS); DEF_KIE_MAX=${DEF_KIE_MAX:-0}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 1.0) }' &&
    log "warning: load average $LOAD_START before starting: other work on this box will skew the numbers"
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/ppa-bench.XXXXXX)
UPLOADS=$(mktemp -d "$UPLOAD_ROOT/ppa-bench-uploads.XXXXXX")
chmod 755 "$WORK"
prepare

log "fake KIE upstreams"
KIE_PORT=$(free_port)
start_nginx kie-nginx kie-nginx.conf "$KIE_PORT"
KIE_PID=$(cat "$WORK/kie-nginx/nginx.pid")
KIE_URL=http://127.0.0.1:$KIE_PORT
"$PY" "$HERE/slow_kie.py" --port 0 --delay-ms "$SLOW_MS" >"$WORK/slow-kie.log" 2>&1 &
SLOW_PID=$!; PIDS+=("$SLOW_PID")
for _ in $(seq 100); do grep -q 'listening on port' "$WORK/slow-kie.log" 2>/dev/null && break; sleep 0.05; done
SLOW_URL=http://127.0.0.1:$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$WORK/slow-kie.log")
[[ $SLOW_URL != http://127.0.0.1: ]] || die "slow fake KIE did not start: $(cat "$WORK/slow-kie.log")"

# --- ours, fresh: start-up, idle RSS, one 1 MB and one 100 MB upload
start_ours ours "$KIE_URL" PER_IP_CONNECTIONS=0
STARTUP_OURS=$OURS_STARTUP_MS
sleep 0.5
IDLE_OURS=$(kib "$OURS_PID" VmRSS); IDLE_THREADS_OURS=$(kib "$OURS_PID" Threads)
read -r UP1_T UP1_BEFORE UP1_PEAK _ < <(one_upload "$OURS_URL" "$OURS_PID" "$WORK/bench-1m.jpg")
read -r BIG_T BIG_BEFORE BIG_PEAK _ < <(one_upload "$OURS_URL" "$OURS_PID" "$WORK/bench-${BIG_MB}m.jpg")
log "ours: idle RSS $(mb "$IDLE_OURS") MB; 1 MB upload peak $(mb "$UP1_PEAK") MB; ${BIG_MB} MB upload peak $(mb "$BIG_PEAK") MB in ${BIG_T} s"
find "$UPLOADS/ours" -type f -size +50M -delete
OURS_FILE=$OURS_URL$(upload_200k "$OURS_URL")
FILES_BODY=$WORK/files-body.jpg   # what ours stored: the reference, nginx and libmicrohttpd alone serve the same bytes
curl -sS --max-time 30 -o "$FILES_BODY" "$OURS_FILE" || die "GET $OURS_FILE failed"
FILES_BYTES=$(stat -c %s "$FILES_BODY")
log "GET /files body: uploaded $(stat -c %s "$WORK/bench-200k.jpg") bytes, ours stored $FILES_BYTES"

# --- ours with the task store off (TASK_STORE=off), for the store's cost on /status and /generate
MAIN_URL=$OURS_URL MAIN_PID=$OURS_PID
start_ours nostore "$KIE_URL" PER_IP_CONNECTIONS=0 TASK_STORE=off
NOSTORE_URL=$OURS_URL NOSTORE_PID=$OURS_PID
OURS_URL=$MAIN_URL OURS_PID=$MAIN_PID

# --- the reference, fresh: start-up, idle RSS, one 100 MB upload
start_ref ref "$KIE_URL"
STARTUP_REF=$REF_STARTUP_MS
IDLE_REF=$(tree_kib "$REF_PID" VmRSS); NPROC_REF=$(pid_tree "$REF_PID" | wc -l)
read -r RBIG_T _ RBIG_PEAK RBIG_LARGEST < <(one_upload "$REF_URL" "$REF_PID" "$WORK/bench-${BIG_MB}m.jpg")
find "$UPLOADS/ref" -type f -size +50M -delete
REF_FILE=$REF_URL$(upload_200k "$REF_URL" "$FILES_BODY")

# --- nginx as a plain reverse proxy (proxy_pass, one worker, upstream keepalive) to the same fake KIE: the
#     anchor for /status and /generate (the transport alone, none of our work on the answer)
PROXY_PORT=$(free_port)
start_nginx proxy-nginx proxy-nginx.conf "$PROXY_PORT" "$KIE_PORT"
PROXY_PID=$(cat "$WORK/proxy-nginx/nginx.pid")
PROXY_URL=http://127.0.0.1:$PROXY_PORT

# --- nginx serving the same file
STATIC_PORT=$(free_port)
mkdir -p "$WORK/static-nginx/html/files"
cp "$FILES_BODY" "$WORK/static-nginx/html/files/bench-200k.jpg"
chmod -R a+rX "$WORK/static-nginx"
start_nginx static-nginx static-nginx.conf "$STATIC_PORT"
STATIC_PID=$(cat "$WORK/static-nginx/nginx.pid")

# --- libmicrohttpd alone (bench/mhd_floor.c) serving the same file with our daemon flags: the ceiling for
#     GET /files on libmicrohttpd, so the report separates what our code costs from what the library costs
MHD_POOL=$(sed -n 's/^#define CONNECTION_MEMORY_LIMIT (\(.*\))$/\1/p' "$ROOT/src/http.c")
[[ -n $MHD_POOL ]] || die "cannot read CONNECTION_MEMORY_LIMIT from src/http.c"
MHD_POOL=$((MHD_POOL))
cc -O2 -Wall -Wextra -Werror -o "$WORK/mhd-floor" "$HERE/mhd_floor.c" $(pkg-config --cflags --libs libmicrohttpd) ||
    die "cannot build bench/mhd_floor.c"
FLOOR_PORT=$(free_port)
"$WORK/mhd-floor" "$FILES_BODY" "$FLOOR_PORT" "$(nproc)" "$MHD_POOL" >"$WORK/mhd-floor.log" 2>&1 &
FLOOR_PID=$!; PIDS+=("$FLOOR_PID")
wait_http "http://127.0.0.1:$FLOOR_PORT/" "$FLOOR_PID"
# ... and answering every GET with the fake KIE's recordInfo JSON, the body /status passes on: what
#     libmicrohttpd costs per request before any of our work or any upstream call
curl -sS --max-time 5 -H 'Authorization: Bearer bench-key' -o "$WORK/record.json" "$KIE_URL/api/v1/jobs/recordInfo?taskId=abc" ||
    die "cannot read the fake KIE's recordInfo answer"
FLOOR2_PORT=$(free_port)
"$WORK/mhd-floor" "$WORK/record.json" "$FLOOR2_PORT" "$(nproc)" "$MHD_POOL" >"$WORK/mhd-floor2.log" 2>&1 &
FLOOR2_PID=$!; PIDS+=("$FLOOR2_PID")
wait_http "http://127.0.0.1:$FLOOR2_PORT/" "$FLOOR2_PID"
# --- libcurl alone (bench/curl_floor.c): the recordInfo call /status makes, CONNECTIONS in flight on one
#     thread through one multi handle as src/upstream.c drives it, nothing done with the answers
cc -O2 -Wall -Wextra -Werror -o "$WORK/curl-floor" "$HERE/curl_floor.c" $(pkg-config --cflags --libs libcurl) ||
    die "cannot build bench/curl_floor.c"

# --- the wrk scenarios, servers interleaved per scenario (the idle ones use no CPU), so that
#     what else runs on the box hits the servers of one scenario alike
for kind in files status generate upload; do
    scenario "$kind" ours "$OURS_URL" "$OURS_PID" "$OURS_FILE"
    [[ $kind != status && $kind != generate ]] || scenario "$kind" nostore "$NOSTORE_URL" "$NOSTORE_PID"
    [[ $kind != status && $kind != generate ]] || scenario "$kind" nginxproxy "$PROXY_URL" "$PROXY_PID"
    [[ $kind != files ]] || scenario files mhd "" "$FLOOR_PID" "http://127.0.0.1:$FLOOR_PORT/"
    if [[ $kind == status ]]; then
        scenario status mhd "http://127.0.0.1:$FLOOR2_PORT" "$FLOOR2_PID"
        KIE_PER_REQ[mhd status]=-   # answers by itself
        curl_floor
    fi
    [[ $kind != files ]] || scenario files nginx "" "$STATIC_PID" "http://127.0.0.1:$STATIC_PORT/files/bench-200k.jpg"
    scenario "$kind" ref "$REF_URL" "$REF_PID" "$REF_FILE"
done
stop_nginx "$WORK/static-nginx"
stop_nginx "$WORK/proxy-nginx"
forget_pid "$FLOOR_PID"
forget_pid "$FLOOR2_PID"
read -r BIG2_T BIG2_BEFORE BIG2_PEAK _ < <(one_upload "$OURS_URL" "$OURS_PID" "$WORK/bench-${BIG_MB}m.jpg")
forget_pid "$OURS_PID"
forget_pid "$NOSTORE_PID"
forget_pid "$REF_PID"
rm -rf "$UPLOADS/ours" "$UPLOADS/ref"

# --- BURST_N concurrent /status against the slow upstream: ours with its defaults, without the per-IP
#     connection limit (all the burst's connections come from 127.0.0.1), with enough upstream connections;
#     then the reference
BURST_ROWS=()
burst_ours() {  # burst_ours LABEL [VAR=VALUE...]
    local label=$1; shift
    start_ours ours-slow "$SLOW_URL" "$@"
    burst "$label" "$OURS_URL" "$OURS_PID"
    BURST_ROWS+=("$label|$BURST_LINE|$BURST_IDLE_THREADS|$BURST_THREADS")
    forget_pid "$OURS_PID"
    rm -rf "$UPLOADS/ours-slow" "$WORK/ours-slow"
}
burst_ours "ours, defaults (PER_IP_CONNECTIONS=$DEF_PER_IP, KIE_MAX_CONNECTIONS=$DEF_KIE_MAX)"
burst_ours "ours, PER_IP_CONNECTIONS=0 (KIE_MAX_CONNECTIONS=$DEF_KIE_MAX)" PER_IP_CONNECTIONS=0
if ((DEF_KIE_MAX < BURST_N)); then
    burst_ours "ours, PER_IP_CONNECTIONS=0 KIE_MAX_CONNECTIONS=$BURST_N" PER_IP_CONNECTIONS=0 KIE_MAX_CONNECTIONS="$BURST_N"
fi
start_ref ref-slow "$SLOW_URL"
burst "reference" "$REF_URL" "$REF_PID"
kill -0 "$REF_PID" 2>/dev/null && alive=yes || alive="no (died)"
BURST_ROWS+=("reference, 2 workers (alive after it: $alive)|$BURST_LINE|$BURST_IDLE_THREADS|$BURST_THREADS")
forget_pid "$REF_PID"

# ---------- the report ----------

{
    echo "# product-photo-api benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -sr)." \
        "wrk -t$THREADS -c$CONNECTIONS -d$DURATION after a $WARMUP warm-up, everything on 127.0.0.1, one server under load at a time (the servers take turns per scenario)."
    echo "Ours: \`$(realpath --relative-to="$ROOT" "$BIN")\` with defaults (THREAD_POOL_SIZE = $(nproc) cores, KIE_MAX_CONNECTIONS=$DEF_KIE_MAX)" \
        "except LOG_LEVEL=warn (access log off), rate limits off, PER_IP_CONNECTIONS=0 (every client is 127.0.0.1). Reference: bench/anchor/app.py under uvicorn_nodelay.py --workers 2" \
        "(--loop asyncio --http h11 --no-access-log). nginx: $(nginx -v 2>&1 | sed 's/.*: //'), sendfile, worker_processes auto."
    echo "Load average before the run: $LOAD_START (1/5/15 min); the \"other\" CPU column is what processes outside the benchmark (and unattributed kernel work) used during each run."
    echo "Upstream for /status and /generate: nginx answering fixed JSON (one worker); the nginx proxy_pass row is bench/proxy-nginx.conf in front of it."
    echo "Ours runs UPSTREAM_THREADS=$(cfg_default UPSTREAM_THREADS || true) (0 = one upstream I/O thread per core). Uploads stored on $(df -PT "$UPLOAD_ROOT" | awk 'NR == 2 { print $2 }') ($UPLOAD_ROOT), pruned during the run."
    echo
    echo "| scenario | server | req/s | p50 ms | p99 ms | errors | KIE calls / req | srv CPU µs / req | CPU % srv / wrk / kie / other / idle | ours / ref | ours / nginx |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    for s in "files:GET /files/<$((FILES_BYTES / 1024)) KB jpg>" "status:GET /status (proxied)" "generate:POST /generate (proxied)" "upload:POST /upload 1 MB multipart"; do
        k=${s%%:*} d=${s#*:}
        for srv in ours nostore mhd nginx nginxproxy ref; do
            [[ -n ${RPS[$srv $k]:-} ]] || continue
            r1=; r2=
            if [[ $srv == ours ]]; then
                r1=$(ratio "${RPS[ours $k]}" "${RPS[ref $k]}")
                [[ -z ${RPS[nginx $k]:-} ]] || r2=$(ratio "${RPS[ours $k]}" "${RPS[nginx $k]}")
                [[ -z ${RPS[nginxproxy $k]:-} ]] || r2=$(ratio "${RPS[ours $k]}" "${RPS[nginxproxy $k]}")
            fi
            name=$srv; [[ $srv != ref ]] || name=reference; [[ $srv != mhd ]] || name="libmicrohttpd alone"
            [[ $srv != mhd || $k != status ]] || name="libmicrohttpd alone, the same JSON answered without KIE"
            [[ $srv != nginxproxy ]] || name="nginx proxy_pass (1 worker, upstream keepalive)"
            [[ $srv != nostore ]] || name="ours, TASK_STORE=off"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$d" "$name" "${RPS[$srv $k]}" "${P50[$srv $k]}" \
                "${P99[$srv $k]}" "${ERRS[$srv $k]}" "${KIE_PER_REQ[$srv $k]}" "${USPR[$srv $k]}" "${CPU[$srv $k]}" "${r1:--}" "${r2:--}"
        done
    done
    echo
    echo "## Targets"
    echo
    echo "| target | measured | result |"
    echo "|---|---|---|"
    echo "| /files >= 0.9x nginx | $(ratio "${RPS[ours files]}" "${RPS[nginx files]}") | $(verdict ge "${RPS[ours files]}" "$(awk -v n="${RPS[nginx files]}" 'BEGIN { print 0.9 * n }')") |"
    for k in status generate; do
        echo "| /$k >= 10x reference | $(ratio "${RPS[ours $k]}" "${RPS[ref $k]}") | $(verdict ge "${RPS[ours $k]}" "$(awk -v n="${RPS[ref $k]}" 'BEGIN { print 10 * n }')") |"
        echo "| /$k our p99 < reference p50 | ${P99[ours $k]} ms vs ${P50[ref $k]} ms | $(verdict lt "${P99[ours $k]}" "${P50[ref $k]}") |"
    done
    # issue 17: against nginx doing only the proxying, same wrk settings, same fake KIE
    for k in status generate; do
        echo "| /$k >= 0.7x nginx proxy req/s | $(ratio "${RPS[ours $k]}" "${RPS[nginxproxy $k]}") | $(verdict ge "${RPS[ours $k]}" "$(awk -v n="${RPS[nginxproxy $k]}" 'BEGIN { print 0.7 * n }')") |"
        echo "| /$k CPU µs/req <= 1.5x nginx proxy's | ${USPR[ours $k]} vs ${USPR[nginxproxy $k]} µs | $(verdict ge "$(awk -v n="${USPR[nginxproxy $k]}" 'BEGIN { print 1.5 * n }')" "${USPR[ours $k]}") |"
        echo "| /$k p99 <= 2x nginx proxy's p99 | ${P99[ours $k]} ms vs ${P99[nginxproxy $k]} ms | $(verdict ge "$(awk -v n="${P99[nginxproxy $k]}" 'BEGIN { print 2 * n }')" "${P99[ours $k]}") |"
    done
    for k in status generate; do
        echo "| /$k with the task store >= 0.9x without (TASK_STORE=off) | $(ratio "${RPS[ours $k]}" "${RPS[nostore $k]}") | $(verdict ge "${RPS[ours $k]}" "$(awk -v n="${RPS[nostore $k]}" 'BEGIN { print 0.9 * n }')") |"
    done
    echo "| /upload >= 5x reference | $(ratio "${RPS[ours upload]}" "${RPS[ref upload]}") | $(verdict ge "${RPS[ours upload]}" "$(awk -v n="${RPS[ref upload]}" 'BEGIN { print 5 * n }')") |"
    # memory flat in the file's size: the big upload peaks within 2 MB of the 1 MB one (the absolute level
    # follows idle RSS, which linking libvips raised to ~24 MB, and libvips' modules load with the first upload)
    echo "| ${BIG_MB} MB upload peak RSS <= 1 MB upload peak + 2 MB (flat in file size) | $(mb "$BIG_PEAK") MB vs $(mb "$UP1_PEAK") MB | $(verdict lt "$BIG_PEAK" $((UP1_PEAK + 2048))) |"
    echo "| all wrk runs without errors | $(for k in "${!ERRS[@]}"; do echo "${ERRS[$k]}"; done | awk '{ s += $1 } END { print s + 0 }') errors | $(verdict [ "$(for k in "${!ERRS[@]}"; do echo "${ERRS[$k]}"; done | awk '{ s += $1 } END { print s + 0 }')" = 0 ]) |"
    echo
    # what the two libraries of the proxied path cost by themselves, against the CPU target's ceiling
    floor=$(awk -v a="${USPR[mhd status]}" -v b="$CURL_FLOOR_US" 'BEGIN { printf "%.0f", a + b }')
    echo "Stack floor of /status (issue 17): libmicrohttpd alone answering the same JSON ${USPR[mhd status]} µs/req" \
        "(${RPS[mhd status]} req/s, no KIE call) + libcurl alone making the recordInfo call (\`bench/curl_floor.c\`: $CONNECTIONS in flight," \
        "one multi handle, kept-alive connections) $CURL_FLOOR_US µs/call ($CURL_FLOOR_CPS calls/s) = $floor µs, with none of our work," \
        "against 1.5x nginx proxy's ${USPR[nginxproxy status]} µs = $(awk -v n="${USPR[nginxproxy status]}" 'BEGIN { printf "%.0f", 1.5 * n }') µs;" \
        "ours: ${USPR[ours status]} µs ($(ratio "${USPR[ours status]}" "$floor") the floor)."
    echo
    echo "/files, ours against libmicrohttpd alone (\`bench/mhd_floor.c\`: same daemon flags, thread pool and connection memory, no routing, headers or logging): $(ratio "${RPS[ours files]}" "${RPS[mhd files]}"); libmicrohttpd alone against nginx: $(ratio "${RPS[mhd files]}" "${RPS[nginx files]}")."
    echo
    echo "## Memory and start-up"
    echo
    echo "| what | ours | reference |"
    echo "|---|---:|---:|"
    echo "| start-up to first answer (ours: /healthz 200; reference: /openapi.json) | $STARTUP_OURS ms | $STARTUP_REF ms |"
    echo "| idle RSS | $(mb "$IDLE_OURS") MB ($IDLE_THREADS_OURS threads) | $(mb "$IDLE_REF") MB ($NPROC_REF processes) |"
    echo "| peak RSS during one 1 MB upload (fresh server) | $(mb "$UP1_PEAK") MB (${UP1_T} s) | - |"
    echo "| peak RSS during one ${BIG_MB} MB upload (fresh server) | $(mb "$BIG_PEAK") MB (before: $(mb "$BIG_BEFORE") MB; ${BIG_T} s) | $(mb "$RBIG_PEAK") MB summed, largest process $(mb "$RBIG_LARGEST") MB (${RBIG_T} s) |"
    echo "| peak RSS during one ${BIG_MB} MB upload after the wrk runs | $(mb "$BIG2_PEAK") MB (before: $(mb "$BIG2_BEFORE") MB; ${BIG2_T} s) | - |"
    echo
    echo "Peak RSS = VmHWM from /proc/PID/status, reset through /proc/PID/clear_refs just before the upload (the reference: summed over its process tree)."
    echo
    echo "## $BURST_N concurrent GET /status, upstream answering after $SLOW_MS ms"
    echo
    echo "| server | wall s (all $BURST_N) | 2xx | non-2xx | errors | p50 s | max s | threads idle -> max during |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for b in "${BURST_ROWS[@]}"; do
        IFS='|' read -r name line idle thr <<<"$b"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s -> %s |\n' "$name" "$(bval "$line" wall_s)" "$(bval "$line" ok)" \
            "$(bval "$line" non2xx)" "$(bval "$line" errors)" "$(bval "$line" p50_s)" "$(bval "$line" max_s)" "$idle" "$thr"
    done
    echo
    echo "Run took $(( $(date +%s) - T_START )) s. Numbers from one run on a shared VM: compare servers within a run, and run twice."
} >"$OUT"

# --- photo normalisation (bench/normalize.sh, its own servers), appended to the report
log "photo normalisation (bench/normalize.sh)"
PPA_BIN=$BIN BENCH_UPLOAD_ROOT=$UPLOAD_ROOT BENCH_NORM_OUT=$WORK/normalize.md bash "$HERE/normalize.sh" >/dev/null ||
    die "bench/normalize.sh failed (the report without it is in $OUT)"
{ echo; cat "$WORK/normalize.md"; } >>"$OUT"

# --- GET /results.zip against zip -0 (bench/zip.sh, its own server), appended to the report
log "results.zip (bench/zip.sh)"
PPA_BIN=$BIN BENCH_UPLOAD_ROOT=$UPLOAD_ROOT BENCH_ZIP_OUT=$WORK/zip.md bash "$HERE/zip.sh" >/dev/null ||
    die "bench/zip.sh failed (the report without it is in $OUT)"
{ echo; cat "$WORK/zip.md"; } >>"$OUT"

# --- POST /upload's receive-and-spool CPU against nginx writing the body to a file (bench/spool.sh)
log "upload spooling (bench/spool.sh)"
PPA_BIN=$BIN BENCH_UPLOAD_ROOT=$UPLOAD_ROOT BENCH_SPOOL_OUT=$WORK/spool.md bash "$HERE/spool.sh" >/dev/null ||
    die "bench/spool.sh failed (the report without it is in $OUT)"
{ echo; cat "$WORK/spool.md"; } >>"$OUT"

# --- a 30-photo CLI batch against the simulator with KIE's rate limit on (bench/batch.sh), appended
log "CLI batch wall time (bench/batch.sh)"
BATCH_LINES=$(bash "$HERE/batch.sh" "$(dirname "$BIN")") || die "bench/batch.sh failed (the report without it is in $OUT)"
{
    echo
    echo "### A 30-photo batch (\`product-photo-api generate DIR\`) against kie-sim, KIE's rate limit on (20 creates / 10 s)"
    echo
    echo "| --jobs | wall s |"
    echo "|---|---|"
    sed -n 's/^batch jobs=\([0-9]*\) wall_s=\([0-9.]*\)$/| \1 | \2 |/p' <<<"$BATCH_LINES"
    echo
    echo "30 creates cannot take less than 10 s at 20 per 10 s; each task takes 3 simulator steps of 150 ms."
} >>"$OUT"
cat "$OUT"
log "report written to $OUT"
