# shellcheck shell=bash
# lib.sh - helpers shared by bench/run.sh, normalize.sh, zip.sh and spool.sh (sourced, not run).
#
# The caller sets: PY (a python3 for free_port), BIN (our server), WORK (scratch dir), UPLOADS (where our
# server stores uploads), PIDS=() (every process started here, stopped by the caller's exit trap).

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
need() { local c; for c in "$@"; do command -v "$c" >/dev/null || die "needs '$c' (see bench/README.md)"; done; }

# ---------- a part's own run (normalize.sh, zip.sh, spool.sh) ----------

# part_traps: on exit run part_cleanup_extra (when the part defines it), stop every PID in PIDS (newest first) and
# remove UPLOADS and WORK; Ctrl-C exits 130; a failing command is logged with its line.
part_cleanup() {
    local rc=$? i
    if declare -F part_cleanup_extra >/dev/null; then part_cleanup_extra; fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    [[ -z $UPLOADS ]] || rm -rf "$UPLOADS"
    [[ -z $WORK ]] || rm -rf "$WORK"
    exit "$rc"
}
part_traps() {
    trap part_cleanup EXIT
    trap 'exit 130' INT TERM
    trap 'log "error: \"$BASH_COMMAND\" failed (line $LINENO)"' ERR
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[++n] = $1 } END { if (!n) { print "-"; exit }
    print (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'; }

# ---------- processes and memory ----------

stop_pid() {  # stop_pid PID: TERM, wait up to 5 s, then KILL
    local p=$1 _
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

forget_pid() {  # forget_pid PID: stop it now and drop it from PIDS
    local p=$1 i
    stop_pid "$p"
    for i in "${!PIDS[@]}"; do [[ ${PIDS[i]} != "$p" ]] || unset 'PIDS[i]'; done
    PIDS=("${PIDS[@]}")
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pid_tree() {  # pid_tree PID: PID and its descendants
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { pid[NR] = $1; ppid[NR] = $2 }
        END {
            keep[root] = 1; print root
            for (changed = 1; changed; ) {
                changed = 0
                for (i = 1; i <= NR; i++)
                    if (!(pid[i] in keep) && (ppid[i] in keep)) { keep[pid[i]] = 1; print pid[i]; changed = 1 }
            }
        }'
}

kib() { awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }
tree_kib() { local s=0 p; for p in $(pid_tree "$1"); do s=$((s + $(kib "$p" "$2"))); done; echo "$s"; }
tree_threads() { local s=0 p; for p in $(pid_tree "$1"); do s=$((s + $(kib "$p" Threads))); done; echo "$s"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

# ---------- our server ----------

wait_http() {  # wait_http URL [PID]: up to 15 s for any HTTP answer
    local _
    for _ in $(seq 300); do
        curl -s --max-time 1 -o /dev/null "$1" && return 0
        [[ -z ${2:-} ]] || kill -0 "$2" 2>/dev/null || die "process $2 died before answering at $1"
        sleep 0.05
    done
    die "nothing answers at $1"
}

OURS_PID='' OURS_URL='' OURS_STARTUP_MS=''
start_ours() {  # start_ours NAME KIE_URL [VAR=VALUE...]: our server, access log off (LOG_LEVEL=warn)
    local name=$1 kie=$2 port t0 t1 code; shift 2
    port=$(free_port)
    mkdir -p "$UPLOADS/$name" "$WORK/$name"
    t0=$(date +%s%N)
    # cwd = an empty dir, so no .env is read; env -i so the caller's environment changes nothing
    (cd "$WORK/$name" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT="$port" UPLOAD_DIR="$UPLOADS/$name" \
        KIE_API_KEY=bench-key KIE_BASE_URL="$kie" ALLOW_PRIVATE_INPUT_URLS=1 ALLOW_PRIVATE_FETCH=1 RATE_LIMIT_GENERATE=0 \
        RATE_LIMIT_UPLOAD=0 MIN_FREE_DISK_MB=0 LOG_LEVEL=warn MAX_UPLOAD_BYTES=200000000 UPLOAD_TTL_HOURS=0 \
        IMAGE_QUEUE=100000 "$@" \
        "$BIN") >"$WORK/$name.log" 2>&1 &
    OURS_PID=$!
    PIDS+=("$OURS_PID")
    OURS_URL=http://127.0.0.1:$port
    for _ in $(seq 3000); do   # poll /healthz without sleeping: start-up time to the first 200
        code=$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "$OURS_URL/healthz" || true)
        [[ $code != 200 ]] || break
        kill -0 "$OURS_PID" 2>/dev/null || die "our server ($name) died: $(tail -5 "$WORK/$name.log")"
    done
    [[ $code == 200 ]] || die "our server ($name) never answered /healthz with 200"
    t1=$(date +%s%N)
    OURS_STARTUP_MS=$(((t1 - t0) / 1000000))
    log "ours ($name) up: pid $OURS_PID, $OURS_URL, /healthz after $OURS_STARTUP_MS ms"
}

cfg_default() { "$BIN" --help 2>/dev/null | sed -n "s/^  $1 .*\[default: \([^]]*\)\]\$/\1/p"; }

# ---------- the report ----------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
verdict() { if "$@"; then echo PASS; else echo MISS; fi; }
