#!/usr/bin/env bash
# spool.sh - POST /upload of 1 MB measured apart from decoding: the CPU our HTTP threads spend receiving,
# parsing (multipart) and spooling the body to a file, against nginx writing the same body to a file
# (client_body_in_file_only), in one run.
#
#   bash bench/spool.sh                 alone (~30 s); writes build/bench-spool.md and prints it
#   `make bench` runs it after the rest (bench/run.sh) and appends the table to the report
#
# The body is run.sh's: a 1 MB multipart upload of a 64x48 JPEG padded with comment segments (bench/mkjpeg.py),
# so decoding is cheap but not free. Both servers are driven by the same wrk (upload.lua, -t2 -c$SPOOL_CONN for
# $SPOOL_DURATION). The image pipeline runs on our `ppa-image` worker threads; receiving, multipart parsing,
# type sniffing and the spool file run on libmicrohttpd's `MHD-worker` threads, whose CPU (utime+stime from
# /proc/PID/task/TID/stat) per request is the figure compared. nginx: one worker, `client_body_in_file_only
# clean` on the same tmpfs, the request then passed without its body (proxy_pass_request_body off, keepalive)
# to a `return 204` location of the same nginx; its worker's CPU per request includes that small internal hop.
# Stored uploads are deleted while wrk runs (as run.sh does), so tmpfs does not fill.
# Target (issue 17): our HTTP threads' CPU per 1 MB upload <= 2x nginx's; the whole process is shown beside it.
#
# Settings (environment): SPOOL_DURATION=8s SPOOL_CONN=8 PPA_BIN=build/product-photo-api
#   BENCH_SPOOL_OUT=build/bench-spool.md BENCH_UPLOAD_ROOT=/dev/shm
set -eEuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${PPA_BIN:-$ROOT/build/product-photo-api}
OUT=${BENCH_SPOOL_OUT:-$ROOT/build/bench-spool.md}
DURATION=${SPOOL_DURATION:-8s}
CONN=${SPOOL_CONN:-8}
UPLOAD_ROOT=${BENCH_UPLOAD_ROOT:-/dev/shm}
BOUNDARY=ppaBenchBoundary7MA4YWxkTrZu0gW
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

WORK='' UPLOADS='' PIDS=() PRUNER=''
part_cleanup_extra() {  # the pruner loop and nginx (a daemon, not in PIDS)
    [[ -z $PRUNER ]] || kill "$PRUNER" 2>/dev/null || true
    [[ -z $WORK || ! -f $WORK/nginx/nginx.pid ]] || kill -QUIT "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
}
part_traps

threads_ticks() {  # threads_ticks PID COMM: utime+stime of PID's threads named COMM ("" = all)
    local t s=0 f
    for t in /proc/"$1"/task/*; do
        [[ -z $2 || $(cat "$t/comm" 2>/dev/null) == "$2" ]] || continue
        f=$(sed 's/^.*) //' "$t/stat" 2>/dev/null) || continue
        s=$((s + $(awk '{ print $12 + $13 }' <<<"$f")))
    done
    echo "$s"
}
us_per_req() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN { printf "%.0f", n ? 1e6 * t / hz / n : 0 }'; }

# drive NAME URL: wrk upload.lua for DURATION; sets REQS RPS P99
drive() {
    local out
    out=$(BENCH_BODY=$WORK/upload-1m.body BENCH_BOUNDARY=$BOUNDARY wrk -t2 -c"$CONN" -d"$DURATION" --timeout 30s \
        -s "$HERE/upload.lua" "$2")
    REQS=$(sed -n 's/.*BENCHRESULT.* requests=\([0-9]*\).*/\1/p' <<<"$out")
    RPS=$(sed -n 's/.*BENCHRESULT.* rps=\([0-9.]*\).*/\1/p' <<<"$out")
    P99=$(sed -n 's/.*BENCHRESULT.* p99_us=\([0-9]*\).*/\1/p' <<<"$out")
    local non2xx
    non2xx=$(sed -n 's/.*BENCHRESULT.* non2xx=\([0-9]*\).*/\1/p' <<<"$out")
    [[ -n $REQS && ${non2xx:-0} == 0 ]] || die "$1: wrk: $(tail -3 <<<"$out")"
    log "$1: $REQS requests, $RPS req/s, p99 $P99 us"
}

need nginx wrk curl awk "$PY"
[[ -x $BIN ]] || die "no server binary at $BIN (make first)"
WORK=$(mktemp -d /tmp/ppa-bench-spool.XXXXXX)
UPLOADS=$(mktemp -d "$UPLOAD_ROOT/ppa-bench-spool.XXXXXX")
chmod 755 "$WORK"
"$PY" "$HERE/mkjpeg.py" "$WORK/bench-1m.jpg" 1048576
if grep -q -a -F -- "$BOUNDARY" "$WORK/bench-1m.jpg"; then die "boundary occurs in bench-1m.jpg; run again"; fi
{
    printf -- '--%s\r\nContent-Disposition: form-data; name="file"; filename="bench-1m.jpg"\r\n' "$BOUNDARY"
    printf 'Content-Type: image/jpeg\r\n\r\n'
    cat "$WORK/bench-1m.jpg"
    printf -- '\r\n--%s--\r\n' "$BOUNDARY"
} >"$WORK/upload-1m.body"
grep -q BENCHRESULT "$HERE/common.lua" || die "bench/common.lua prints no BENCHRESULT line"

# --- nginx: the body written to a file on the same tmpfs, then answered 204
NGX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs" "$UPLOADS/nginx-body"
chmod 755 "$UPLOADS"; chmod 1777 "$UPLOADS/nginx-body"   # nginx workers run as nobody when started by root
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $UPLOADS/nginx-body;
    client_max_body_size 200m;
    client_body_buffer_size 128k;
    upstream self { server 127.0.0.1:$NGX_PORT; keepalive 16; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location = /upload {
            client_body_in_file_only clean;
            proxy_pass http://self/done;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
            proxy_http_version 1.1;
        }
        location = /done { return 204; }
    }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" || die "nginx did not start"
for _ in $(seq 100); do [[ -s $WORK/nginx/nginx.pid ]] && break; sleep 0.05; done
NGX_MASTER=$(cat "$WORK/nginx/nginx.pid")
NGX_WORKER=$(pgrep -P "$NGX_MASTER" | head -1)
[[ -n $NGX_WORKER ]] || die "no nginx worker"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Content-Type: multipart/form-data; boundary=$BOUNDARY" \
    --data-binary "@$WORK/upload-1m.body" "http://127.0.0.1:$NGX_PORT/upload")
[[ $code == 204 ]] || die "nginx /upload answered $code: $(tail -3 "$WORK/nginx/logs/error.log")"

# --- ours
start_ours spool http://127.0.0.1:9 TASK_STORE=off PER_IP_CONNECTIONS=0
code=$(curl -sS -o "$WORK/one.json" -w '%{http_code}' -H "Content-Type: multipart/form-data; boundary=$BOUNDARY" \
    --data-binary "@$WORK/upload-1m.body" "$OURS_URL/upload")
[[ $code == 200 ]] || die "our /upload answered $code: $(head -c 300 "$WORK/one.json")"
(while sleep 0.5; do find "$UPLOADS/spool" -maxdepth 1 -type f -name '*.jpg' -mmin -60 ! -newermt '-1 second' \
    -delete 2>/dev/null || true; done) &
PRUNER=$!

n0=$(threads_ticks "$NGX_WORKER" ""); drive nginx "http://127.0.0.1:$NGX_PORT/upload"; n1=$(threads_ticks "$NGX_WORKER" "")
NGX_REQS=$REQS NGX_RPS=$RPS NGX_P99=$P99
m0=$(threads_ticks "$OURS_PID" MHD-worker); a0=$(threads_ticks "$OURS_PID" "")
drive ours "$OURS_URL/upload"
m1=$(threads_ticks "$OURS_PID" MHD-worker); a1=$(threads_ticks "$OURS_PID" "")
[[ $(threads_ticks "$OURS_PID" ppa-image) -gt 0 ]] || die "no ppa-image thread: thread names changed?"

ngx_us=$(us_per_req "$((n1 - n0))" "$NGX_REQS")
http_us=$(us_per_req "$((m1 - m0))" "$REQS")
all_us=$(us_per_req "$((a1 - a0))" "$REQS")
{
    echo "### POST /upload 1 MB: receiving and spooling, apart from decoding"
    echo
    echo "| | req/s | p99 ms | CPU µs per request |"
    echo "|---|---|---|---|"
    echo "| ours, HTTP threads (MHD-worker: receive, multipart, sniff, spool file) | $RPS | $(awk -v u="$P99" 'BEGIN { printf "%.1f", u / 1000 }') | $http_us |"
    echo "| ours, whole process (plus the image pipeline on ppa-image threads) | | | $all_us |"
    echo "| anchor: nginx, client_body_in_file_only (1 worker) | $NGX_RPS | $(awk -v u="$NGX_P99" 'BEGIN { printf "%.1f", u / 1000 }') | $ngx_us |"
    echo
    echo "| target | ours | anchor | verdict |"
    echo "|---|---|---|---|"
    echo "| HTTP threads' CPU per 1 MB upload <= 2x nginx's | $http_us µs | $ngx_us µs ($(ratio "$http_us" "$ngx_us")) | $(verdict ge "$((2 * ngx_us))" "$http_us") |"
    echo
    echo "wrk -t2 -c$CONN -d$DURATION, the same body for both; req/s of ours is bound by the image workers."
} >"$OUT"
cat "$OUT"
