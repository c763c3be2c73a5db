#!/usr/bin/env bash
# normalize.sh - the photo-normalisation part of the benchmark: our POST /upload against whole-process
# anchors doing the same job (auto-orient, longest side <= 2048, strip metadata, JPEG q90), in one run.
#
#   bash bench/normalize.sh                   alone (~1 min); writes build/bench-normalize.md and prints it
#   BENCH_ONLY=normalize bash bench/run.sh    the same through run.sh; `make bench` runs it after the rest
#
# Photos (tests/fixtures/make_images.py, cached in $BENCH_FIXTURES): phone12mp.jpg (12 MP, EXIF orientation 6),
# phone12mp.heic (the same pixels, irot), camera48mp.jpg (48 MP, 25 MB). For each of $NORM_REPS repetitions,
# each photo, in turn: Pillow (bench/pil_normalize.py), ImageMagick (/usr/bin/convert), vipsthumbnail (the
# floor), each a whole process under /usr/bin/time (wall s, max RSS); then ours: one `curl -F` upload, curl's
# time_total and the server's VmHWM during it (reset through /proc/PID/clear_refs). Every normaliser's output
# of the first repetition is checked with make_images.py --verify (size, corners upright, metadata gone).
# Then: IMAGE_WORKERS uploads at once and $NORM_BURST at once (peak RSS), /healthz latency during the burst.
#
# Settings (environment): NORM_REPS=3 NORM_BURST=8 PPA_BIN=build/product-photo-api
#   BENCH_NORM_OUT=build/bench-normalize.md BENCH_FIXTURES=build/fixtures BENCH_UPLOAD_ROOT=/dev/shm
#   IMAGE_WORKERS (passed to our server when set)
# Not a test: a missed target is reported (MISS); it fails only on a broken set-up (a tool or the server
# missing, the server not starting, curl not reaching it). Answers such as 415 or 413 are reported as such.
set -eEuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${PPA_BIN:-$ROOT/build/product-photo-api}
OUT=${BENCH_NORM_OUT:-$ROOT/build/bench-normalize.md}
FIXTURES=${BENCH_FIXTURES:-$ROOT/build/fixtures}
REPS=${NORM_REPS:-3}
BURST=${NORM_BURST:-8}
UPLOAD_ROOT=${BENCH_UPLOAD_ROOT:-/dev/shm}
PY=/usr/bin/python3
CONVERT=/usr/bin/convert   # /usr/local/bin/convert may be something else
MKIMG=$ROOT/tests/fixtures/make_images.py
PHOTOS=(phone12mp.jpg phone12mp.heic camera48mp.jpg)
TOOLS=(pillow imagemagick vipsthumbnail ours)
T_START=$(date +%s)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

WORK='' UPLOADS='' PIDS=()
part_traps

pct() { sort -n | awk -v p="$1" '{ v[n++] = $1 } END { if (!n) { print "-"; exit }
    i = int(p * (n - 1) + 0.5); print v[i] }'; }
mb_or() { if [[ $1 == - ]]; then echo -; else mb "$1"; fi; }   # mb, or '-' for no value
ms() { awk -v s="$1" 'BEGIN { if (s == "-") print "-"; else printf "%.1f", 1000 * s }'; }
mime_of() {
    case ${1##*.} in
        jpg | jpeg) echo image/jpeg ;; png) echo image/png ;; webp) echo image/webp ;; heic) echo image/heic ;;
        heif) echo image/heif ;; avif) echo image/avif ;; tif | tiff) echo image/tiff ;; *) echo application/octet-stream ;;
    esac
}
tool_name() {
    case $1 in
        pillow) echo "Pillow $("$PY" -c 'import PIL; print(PIL.__version__)')" ;;
        imagemagick) "$CONVERT" -version | sed -n '1s/^Version: ImageMagick \([^ ]*\).*/ImageMagick \1/p' ;;
        vipsthumbnail) echo "vipsthumbnail $(vips --version | sed 's/^vips-//')" ;;
        ours) echo "ours (POST /upload)" ;;
    esac
}

# verify NAME FILE: make_images.py's verdict on a normalised NAME ("ok" or the problems)
verify() { "$PY" "$MKIMG" "$FIXTURES" --verify "$1" "$2" 2>&1 | tail -1 || true; }

declare -A TIMES RSS NOTE CODES
add() { local -n arr=$2; arr[$1]="${arr[$1]:+${arr[$1]} }$3"; }   # add KEY ARRAY VALUE: append to a list

# anchor TOOL NAME REP: one whole-process run of TOOL on the fixture NAME
anchor() {
    local tool=$1 name=$2 rep=$3 in=$FIXTURES/$2 out=$WORK/out-$1.jpg cmd s kb
    rm -f "$out"
    case $tool in
        pillow) cmd=("$PY" "$HERE/pil_normalize.py" "$in" "$out") ;;
        imagemagick) cmd=("$CONVERT" "$in" -auto-orient -resize '2048x2048>' -strip -quality 90 "$out") ;;
        vipsthumbnail) cmd=(vipsthumbnail "$in" -s 2048 -o "${out}[Q=90,strip]") ;;
    esac
    if /usr/bin/time -f "%e %M" -o "$WORK/time" "${cmd[@]}" >"$WORK/anchor.err" 2>&1 && [[ -s $out ]]; then
        read -r s kb < <(tail -1 "$WORK/time")
        add "$tool $name" TIMES "$s"; add "$tool $name" RSS "$kb"
        ((rep > 1)) || NOTE[$tool $name]=$(verify "$name" "$out")
        log "$tool $name: $s s, $(mb "$kb") MB"
    else
        NOTE[$tool $name]="failed: $(grep -v '^Command exited' "$WORK/anchor.err" | tail -1 | sed "s|$FIXTURES/||g" | cut -c1-120)"
        log "$tool $name: ${NOTE[$tool $name]}"
    fi
}

# answer FILE: "code_or_error content_type width height size url" from our JSON answer ('-' where absent)
answer() {
    "$PY" -c 'import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception:
    j = {}
e = j.get("error") or {}
g = lambda k: str(j.get(k)) if j.get(k) is not None else "-"
print(e.get("code", "-") if isinstance(e, dict) else "-", g("content_type"), g("width"), g("height"), g("size"), g("url"))' "$1"
}

reset_hwm() { local p; for p in $(pid_tree "$OURS_PID"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || die "cannot reset VmHWM of $p (/proc/$p/clear_refs)"; done; }
tree_hwm() { tree_kib "$OURS_PID" VmHWM; }
clear_uploads() { find "$UPLOADS/norm" -maxdepth 1 -type f ! -name '.*' -delete 2>/dev/null || true; }

# ours NAME REP: one curl -F upload of the fixture NAME to our server
ours() {
    local name=$1 rep=$2 in=$FIXTURES/$1 out code t peak err ctype w h size url got
    reset_hwm
    out=$(curl -sS --max-time 300 -o "$WORK/answer.json" -w '%{http_code} %{time_total}' \
        -F "file=@$in;type=$(mime_of "$in")" "$OURS_URL/upload") || die "upload of $name: curl failed"
    read -r code t <<<"$out"
    t=$(awk -v t="$t" 'BEGIN { printf "%.3f", t }')
    peak=$(tree_hwm)
    add "ours $name" TIMES "$t"; add "ours $name" RSS "$peak"; add "ours $name" CODES "$code"
    read -r err ctype w h size url < <(answer "$WORK/answer.json")
    if ((rep == 1)); then
        if [[ $code == 200 && $url == /files/* ]]; then
            got=$(curl -sS --max-time 60 -o "$WORK/out-ours" -w '%{http_code}' "$OURS_URL$url") || die "GET $url failed"
            [[ $got == 200 ]] || die "GET $url after the upload answered $got"
            [[ $w != - ]] && w="${w}x$h" || w="no width/height in the answer"
            NOTE[ours $name]="200 $ctype, $w, $size B; $(verify "$name" "$WORK/out-ours")"
        else
            NOTE[ours $name]="$code $err"
        fi
    fi
    clear_uploads
    log "ours $name: HTTP $code $err in $t s, peak RSS $(mb "$peak") MB"
}

# normalised NAME: did ours answer 200 every time and store a correct normalised file?
normalised() { [[ ${NOTE[ours $1]:-} == *"; ok" && " ${CODES[ours $1]} " != *" "[!2]??" "* ]]; }
why_not() { [[ ${NOTE[ours $1]:-} == 200* ]] && echo "not normalised (${NOTE[ours $1]#*; })" || echo "answered ${NOTE[ours $1]:-nothing}"; }

# at_once N NAME [PROBE]: N uploads of NAME at once; sets AT_PEAK AT_CODES AT_WALL, and with PROBE the
# /healthz time_total of probes sent every 10 ms while they run into $WORK/probes
at_once() {
    local n=$1 name=$2 probe=${3:-} in=$FIXTURES/$2 i pids=() t0 t1 left
    : >"$WORK/probes"
    reset_hwm
    t0=$(date +%s%N)
    for ((i = 1; i <= n; i++)); do
        curl -sS --max-time 300 -o "$WORK/at$i.json" -w '%{http_code}\n' -F "file=@$in;type=$(mime_of "$in")" \
            "$OURS_URL/upload" >"$WORK/at$i.code" 2>"$WORK/at$i.err" &
        pids+=($!)
    done
    PIDS+=("${pids[@]}")
    while [[ -n $probe ]]; do
        left=0
        for i in "${pids[@]}"; do ! kill -0 "$i" 2>/dev/null || left=1; done
        ((left)) || break
        curl -s --max-time 5 -o /dev/null -w '%{time_total}\n' "$OURS_URL/healthz" >>"$WORK/probes" || echo 5 >>"$WORK/probes"
        sleep 0.01
    done
    for i in "${pids[@]}"; do wait "$i" || true; forget_pid "$i"; done
    t1=$(date +%s%N)
    AT_PEAK=$(tree_hwm)
    AT_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    AT_CODES=$(cat "$WORK"/at*.code | sed 's/^000$/curl-error/' | sort | uniq -c | awk '{ printf "%s%s x %s", sep, $1, $2; sep = ", " }')
    rm -f "$WORK"/at*.code "$WORK"/at*.json "$WORK"/at*.err
    clear_uploads
    log "$n x $name at once: $AT_CODES in $AT_WALL s, peak RSS $(mb "$AT_PEAK") MB"
}

# ---------- the run ----------

need curl awk vipsthumbnail vips "$PY"
[[ -x $CONVERT ]] || die "needs ImageMagick's $CONVERT (Debian imagemagick)"
[[ -x /usr/bin/time ]] || die "needs /usr/bin/time (Debian time)"
"$PY" -c 'import PIL' 2>/dev/null || die "needs Debian's python3-pil"
if [[ ! -x $BIN ]]; then log "building $BIN"; make -C "$ROOT" --no-print-directory all >&2; fi
[[ -x $BIN ]] || die "no server binary at $BIN"
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/ppa-norm.XXXXXX)
UPLOADS=$(mktemp -d "$UPLOAD_ROOT/ppa-norm-uploads.XXXXXX")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "photos: $MKIMG into $FIXTURES"
"$PY" "$MKIMG" "$FIXTURES" --only "$(IFS=,; echo "${PHOTOS[*]}")" >"$WORK/manifest.json" || die "make_images.py failed"
cat "${PHOTOS[@]/#/$FIXTURES/}" >/dev/null   # in the page cache before the first run
# shellcheck disable=SC2016  # the backticks are Markdown, in Python
PHOTO_DESC=$("$PY" -c 'import json, sys
def desc(n, e):
    s = "`%s` %.1f MB, %dx%d" % (n, e["bytes"] / 1e6, e["width"], e["height"])
    if "upright" in e:
        s += " (EXIF orientation %d%s, upright %dx%d)" % (e["orientation"], " + irot" if "irot" in e else "", *e["upright"])
    return s
print("; ".join(desc(n, e) for n, e in json.load(open(sys.argv[1])).items()))' "$WORK/manifest.json")

extra=()
[[ -z ${IMAGE_WORKERS:-} ]] || extra+=(IMAGE_WORKERS="$IMAGE_WORKERS")
start_ours norm http://127.0.0.1:9 PER_IP_CONNECTIONS=0 "${extra[@]}"
STARTUP=$OURS_STARTUP_MS
sleep 0.5
IDLE=$(tree_kib "$OURS_PID" VmRSS)

# IMAGE_WORKERS: what /config reports, else the --help default, else the number of cores
curl -s --max-time 5 -o "$WORK/config.json" "$OURS_URL/config" || true
WORKERS=$("$PY" -c 'import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception:
    j = {}
v = j.get("image_workers", (j.get("image") or {}).get("workers") if isinstance(j.get("image"), dict) else None)
print(v if isinstance(v, int) and v > 0 else "")' "$WORK/config.json")
if [[ -n $WORKERS ]]; then WORKERS_FROM="from /config"
else
    WORKERS=${IMAGE_WORKERS:-$(cfg_default IMAGE_WORKERS)}
    if [[ $WORKERS =~ ^[1-9][0-9]*$ ]]; then WORKERS_FROM=${IMAGE_WORKERS:+IMAGE_WORKERS set for this run}; WORKERS_FROM=${WORKERS_FROM:-the IMAGE_WORKERS default in --help}
    else WORKERS=$(nproc); WORKERS_FROM="nproc: the server reports no worker count"; fi
fi
log "ours: start-up $STARTUP ms, idle RSS $(mb "$IDLE") MB, IMAGE_WORKERS $WORKERS ($WORKERS_FROM)"

for ((rep = 1; rep <= REPS; rep++)); do
    for name in "${PHOTOS[@]}"; do
        for tool in "${TOOLS[@]}"; do
            if [[ $tool == ours ]]; then ours "$name" "$rep"; else anchor "$tool" "$name" "$rep"; fi
        done
    done
done

# /healthz at rest, then WORKERS uploads at once, then a burst of BURST with /healthz probed during it
for _ in $(seq 20); do curl -s --max-time 5 -o /dev/null -w '%{time_total}\n' "$OURS_URL/healthz"; done >"$WORK/idle-probes"
HZ_IDLE_P50=$(pct 0.5 <"$WORK/idle-probes"); HZ_IDLE_MAX=$(pct 1 <"$WORK/idle-probes")
at_once "$WORKERS" phone12mp.jpg
W_PEAK=$AT_PEAK W_CODES=$AT_CODES W_WALL=$AT_WALL
at_once "$BURST" phone12mp.jpg probe
B_PEAK=$AT_PEAK B_CODES=$AT_CODES B_WALL=$AT_WALL
HZ_N=$(wc -l <"$WORK/probes"); HZ_P50=$(pct 0.5 <"$WORK/probes"); HZ_MAX=$(pct 1 <"$WORK/probes")
log "/healthz during the burst: $HZ_N probes, p50 $(ms "$HZ_P50") ms, max $(ms "$HZ_MAX") ms"
kill -0 "$OURS_PID" 2>/dev/null || die "our server died during the run: $(tail -5 "$WORK/norm.log")"
forget_pid "$OURS_PID"

# ---------- the report ----------

med() { median <<<"${TIMES[$1 $2]:-}"; }
med_kb() { median <<<"${RSS[$1 $2]:-}"; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && b != "-" && a <= b) }'; }
SINGLE=$(med_kb ours phone12mp.jpg)
bound() { awk -v i="$IDLE" -v s="$SINGLE" -v w="$WORKERS" 'BEGIN { printf "%.0f", i + w * (s - i) }'; }
{
    echo "## Normalising a photo: ours against Pillow, ImageMagick and vipsthumbnail"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average before: $LOAD_START. Task: auto-orient, longest side <= 2048, strip metadata, JPEG q90."
    echo "Photos from \`tests/fixtures/make_images.py\`: $PHOTO_DESC."
    echo "Anchors: whole processes under \`/usr/bin/time\` (wall, max RSS), started in turn with ours for each photo, $REPS repetitions."
    echo "Ours: \`$(realpath --relative-to="$ROOT" "$BIN")\` (IMAGE_WORKERS $WORKERS, $WORKERS_FROM), one \`curl -F file=@photo\` each: curl's time_total (request in to answer out, over loopback) and the server's VmHWM during that upload (reset through /proc/PID/clear_refs)."
    echo "Output: \`make_images.py --verify\` on the first repetition's file (ours: fetched back from /files): size, corner markers upright, no metadata left."
    echo
    echo "| photo | normaliser | wall s ($REPS runs) | median s | peak RSS MB (median) | answer / output |"
    echo "|---|---|---|---:|---:|---|"
    for name in "${PHOTOS[@]}"; do
        for tool in "${TOOLS[@]}"; do
            printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$(tool_name "$tool")" "${TIMES[$tool $name]:--}" \
                "$(med "$tool" "$name")" "$(mb_or "$(med_kb "$tool" "$name")")" "${NOTE[$tool $name]:--}"
        done
    done
    echo
    echo "| ours | |"
    echo "|---|---|"
    echo "| start-up to the first /healthz 200 | $STARTUP ms |"
    echo "| idle RSS | $(mb "$IDLE") MB |"
    echo "| peak RSS, one phone12mp.jpg upload (median) | $(mb "$SINGLE") MB |"
    echo "| peak RSS, $WORKERS uploads of phone12mp.jpg at once (IMAGE_WORKERS) | $(mb "$W_PEAK") MB ($W_CODES, $W_WALL s) |"
    echo "| peak RSS, $BURST uploads of phone12mp.jpg at once | $(mb "$B_PEAK") MB ($B_CODES, $B_WALL s) |"
    echo "| /healthz at rest, 20 probes: p50 / max | $(ms "$HZ_IDLE_P50") / $(ms "$HZ_IDLE_MAX") ms |"
    echo "| /healthz during the $BURST uploads, every 10 ms: probes, p50 / max | $HZ_N, $(ms "$HZ_P50") / $(ms "$HZ_MAX") ms |"
    echo
    echo "### Targets (every one needs ours to answer 200 with a correct normalised file; otherwise MISS, and why)"
    echo
    echo "| target | measured | result |"
    echo "|---|---|---|"
    for name in "${PHOTOS[@]}"; do
        o=$(med ours "$name") v=$(med vipsthumbnail "$name")
        lim=$(awk -v v="$v" 'BEGIN { if (v == "-") print "-"; else print 1.1 * v }')
        m="$o s vs $v s ($(ratio "$o" "$v"))"
        if normalised "$name"; then r=$(verdict le "$o" "$lim"); else r=MISS m="$m, but $(why_not "$name")"; fi
        echo "| $name: ours <= 1.1x vipsthumbnail's time | $m | $r |"
    done
    for name in phone12mp.jpg camera48mp.jpg; do
        o=$(med ours "$name") p=$(med pillow "$name")
        half=$(awk -v p="$p" 'BEGIN { if (p == "-") print "-"; else print p / 2 }')
        m="$o s vs $p s ($(ratio "$p" "$o") faster)"
        if normalised "$name"; then r=$(verdict le "$o" "$half"); else r=MISS m="$m, but $(why_not "$name")"; fi
        echo "| $name: ours >= 2x faster than Pillow | $m | $r |"
    done
    for name in "${PHOTOS[@]}"; do
        o=$(med_kb ours "$name") v=$(med_kb vipsthumbnail "$name")
        lim=$(awk -v v="$v" -v i="$IDLE" 'BEGIN { if (v == "-") print "-"; else print v + i }')
        m="$(mb "$o") MB vs $(mb_or "$v") + $(mb "$IDLE") MB"
        if normalised "$name"; then r=$(verdict lt "$o" "$lim"); else r=MISS m="$m, but $(why_not "$name")"; fi
        echo "| $name: ours' peak RSS < vipsthumbnail's peak + our idle RSS | $m | $r |"
    done
    for row in "$WORKERS:$W_PEAK:$W_CODES" "$BURST:$B_PEAK:$B_CODES"; do
        IFS=: read -r n peak codes <<<"$row"
        m="$(mb "$peak") MB vs $(mb "$IDLE") + $WORKERS x ($(mb "$SINGLE") - $(mb "$IDLE")) = $(mb "$(bound)") MB"
        if ! normalised phone12mp.jpg; then r=MISS m="$m, but $(why_not phone12mp.jpg)"
        elif [[ $codes != "$n x 200" ]]; then r=MISS m="$m, answers: $codes"
        else r=$(verdict le "$peak" "$(bound)"); fi
        echo "| $n uploads at once: peak RSS <= idle + IMAGE_WORKERS x (one upload's peak - idle) | $m | $r |"
    done
    m="p50 $(ms "$HZ_P50") ms, max $(ms "$HZ_MAX") ms over $HZ_N probes during $B_WALL s"
    for t in "p50:$HZ_P50:0.005" "max:$HZ_MAX:0.025"; do
        IFS=: read -r what val lim <<<"$t"
        if ! normalised phone12mp.jpg; then r=MISS mm="$m, but $(why_not phone12mp.jpg)"; else r=$(verdict le "$val" "$lim") mm=$m; fi
        echo "| /healthz $what during $BURST uploads <= $(ms "$lim") ms | $mm | $r |"
    done
    echo
    echo "Normalisation part took $(($(date +%s) - T_START)) s."
} >"$OUT"
cat "$OUT"
log "report written to $OUT"
