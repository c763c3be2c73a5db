#!/usr/bin/env bash
# Smoke test for the KIE simulator (tools/kie-sim). Loopback only.
#
#   KIE_SIM=build/kie-sim tests/sim/test_kie_sim.sh      (default binary: build/kie-sim)
#
# Starts kie-sim on an ephemeral port, a python http.server with test images,
# and a python listener for callbacks/redirects, then checks auth, validation,
# the task lifecycle, download failures, the loopback-only rule, every
# create/record mode, latency concurrency, callbacks (+HMAC), the served PNG,
# hostile input, eviction, CLI handling and clean shutdown; then sources the
# parts for the newer features (upload.sh: KIE's file-upload API; result.sh:
# the studio result image; credits.sh: balances, prices, 402, refunds;
# ratelimit.sh: KIE's 20 createTask per 10 s per key; failmatch.sh: the
# knobs that fail one chosen task, the request log's timestamps). For a sanitizer
# build, point KIE_SIM at it; any ASan/UBSan report in its stderr fails the run.
# Prints "N passed, N failed"; exits 1 if anything failed.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIM=${KIE_SIM:-$ROOT/build/kie-sim}
PY=/usr/bin/python3
KEY=test-key
PASS=0
FAIL=0
PIDS=()
T=$(mktemp -d /tmp/kie-sim-test.XXXXXX)

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

ok()   { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL - $1${2:+ ($2)}"; }
# check NAME CMD...: passes if CMD succeeds
check() { local n=$1; shift; if "$@"; then ok "$n"; else bad "$n"; fi; }
# jv JSON 'STMT; ...; EXPR' -> runs the statements with d = parsed JSON and
# prints EXPR (strings as-is, anything else as Python repr; <err:..> on error)
jv() { printf '%s' "$1" | "$PY" -c 'import json,sys
try:
    d=json.load(sys.stdin); parts=sys.argv[1].split("; "); env={"d":d,"json":json}
    for st in parts[:-1]: exec(st, env)
    v=eval(parts[-1], env)
    print(v if isinstance(v,str) else repr(v))
except Exception as e:
    print("<err:%s>" % e)' "$2"; }
# eq NAME GOT WANT
eq() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi; }
has() { case "$2" in *"$3"*) ok "$1";; *) bad "$1" "'$3' not in '$2'";; esac; }
now_ms() { date +%s%3N; }

[ -x "$SIM" ] || { echo "kie-sim binary not found: $SIM (build it or set KIE_SIM)"; echo "0 passed, 1 failed"; exit 1; }

# wait_port FILE PATTERN -> prints the port once PATTERN<port> shows up in FILE
wait_port() {
    local i
    for i in $(seq 1 100); do
        local p
        p=$(sed -n "s/.*$2\([0-9][0-9]*\).*/\1/p" "$1" 2>/dev/null | head -n1)
        if [ -n "$p" ]; then echo "$p"; return 0; fi
        sleep 0.05
    done
    return 1
}

# start_sim NAME ARGS... -> sets SIM_PID, SIM_PORT; stdout/stderr in $T/NAME.{out,err}
SIM_NAMES=()
start_sim() {
    local name=$1; shift
    "$SIM" "$@" >"$T/$name.out" 2>"$T/$name.err" &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    SIM_NAMES+=("$name")
    SIM_PORT=$(wait_port "$T/$name.out" "kie-sim listening on port ") || { echo "sim $name did not start"; cat "$T/$name.err"; exit 1; }
}
# stop_sim PID NAME: SIGTERM, then the exit code must be 0 (sanitizer reports come at exit)
stop_sim() {
    kill -TERM "$1"
    wait "$1"
    eq "shutdown: $2 exits 0 on SIGTERM" "$?" 0
}

# ---------------------------------------------------------------- fixtures
mkdir -p "$T/www"
"$PY" - "$T/www" <<'EOF'
import struct, sys, zlib, os
d = sys.argv[1]
def chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
w, h = 64, 48
raw = b"".join(b"\x00" + bytes(3 * w) for _ in range(h))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(os.path.join(d, "in.png"), "wb").write(png)
# header-only JPEG (SOI, APP0, SOF0 200x100, EOI) and WEBP (VP8X 300x100): they
# sniff as images with a size, but do not decode
sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 100, 200, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
open(os.path.join(d, "hdr.jpg"), "wb").write(b"\xff\xd8" + b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof + b"\xff\xd9")
vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (299).to_bytes(3, "little") + (99).to_bytes(3, "little")
open(os.path.join(d, "hdr.webp"), "wb").write(b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x)
# sources of the real JPEG (200x100) and WEBP (300x100), made with vips below
def rgb_png(path, w, h, px):
    raw = b"".join(b"\x00" + b"".join(bytes(px(x, y)) for x in range(w)) for y in range(h))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
rgb_png(os.path.join(d, "src-jpg.png"), 200, 100, lambda x, y: (200, 40, 40))
rgb_png(os.path.join(d, "src-webp.png"), 300, 100, lambda x, y: (40, 160, 60))
open(os.path.join(d, "notimage.txt"), "w").write("hello, I am not an image\n")
with open(os.path.join(d, "big.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * (11 * 1024 * 1024))
EOF
vips copy "$T/www/src-jpg.png" "$T/www/in.jpg[Q=90]" && vips copy "$T/www/src-webp.png" "$T/www/in.webp" \
    || { echo "vips (libvips-tools) is needed to make the JPEG and WEBP fixtures"; echo "0 passed, 1 failed"; exit 1; }

"$PY" -u -m http.server 0 --bind 127.0.0.1 --directory "$T/www" >"$T/www.out" 2>"$T/www.err" &
PIDS+=("$!")
WWW_PORT=$(wait_port "$T/www.out" "port ") || { echo "http.server did not start"; exit 1; }
WWW="http://127.0.0.1:$WWW_PORT"

# callback listener: POST -> one JSON line per request in cb.log; GET
# /redirect-out -> 302 to a non-loopback address; /redirect-in -> 302 to in.png
cat >"$T/listener.py" <<'EOF'
import http.server, json, sys, threading
log_path, www = sys.argv[1], sys.argv[2]
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        rec = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("utf-8", "replace")}
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def do_GET(self):
        target = {"/redirect-out": "http://10.255.255.1/x.png", "/redirect-in": www + "/in.png",
                  "/redirect-name": "http://example.invalid/x.png"}.get(self.path)
        if target:
            self.send_response(302); self.send_header("Location", target)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0"); self.end_headers()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("listener port %d" % s.server_address[1], flush=True)
s.serve_forever()
EOF
"$PY" -u "$T/listener.py" "$T/cb.log" "$WWW" >"$T/listener.out" 2>"$T/listener.err" &
PIDS+=("$!")
LPORT=$(wait_port "$T/listener.out" "listener port ") || { echo "listener did not start"; exit 1; }
LST="http://127.0.0.1:$LPORT"
touch "$T/cb.log"

start_sim main --step-ms 150
MAIN_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
echo "# kie-sim on $SIM_PORT, images on $WWW_PORT, listener on $LPORT"

# HTTP helpers: each sets CODE (HTTP status) and BODY
req() { # req METHOD PATH [DATA|""] [extra curl args...]
    local m=$1 p=$2; shift 2
    local data=()
    if [ $# -gt 0 ]; then [ -n "$1" ] && data=(--data-binary "$1"); shift; fi
    local out
    out=$(curl -s -m 10 -o "$T/body" -w '%{http_code}' -X "$m" "${data[@]}" "$@" "$S$p")
    CURL_RC=$?
    CODE=$out
    BODY=$(cat "$T/body" 2>/dev/null)
}
auth=(-H "Authorization: Bearer $KEY" -H "Content-Type: application/json")
create() { req POST /api/v1/jobs/createTask "$1" "${auth[@]}"; }
record() { req GET "/api/v1/jobs/recordInfo?taskId=$1" "" -H "Authorization: Bearer $KEY"; }
config() { req POST /sim/config "$1"; }
# body URL... -> a valid createTask body (aspect 16:9 unless ASPECT set)
mkbody() {
    "$PY" -c 'import json,sys,os
a=sys.argv[1:]; cb=os.environ.get("CB")
b={"model":"flux-2/pro-image-to-image","input":{"input_urls":a,"prompt":"studio shot of a mug",
   "aspect_ratio":os.environ.get("ASPECT","16:9"),"resolution":os.environ.get("RES","1K")}}
if cb: b["callBackUrl"]=cb
print(json.dumps(b))' "$@"
}
# wait_state TASKID -> polls recordInfo every ~20 ms until success|fail (max 5 s);
# sets STATES (space-separated distinct states in order) and BODY
wait_state() {
    STATES=""
    local last="" i st
    for i in $(seq 1 250); do
        record "$1"
        st=$(printf '%s' "$BODY" | grep -o '"state":"[a-z]*"' | cut -d'"' -f4)
        if [ -n "$st" ] && [ "$st" != "$last" ]; then STATES="$STATES $st"; last=$st; fi
        case "$st" in success|fail) STATES=${STATES# }; return 0;; esac
        sleep 0.02
    done
    STATES=${STATES# }
    return 1
}
# wait_cb TASKID -> prints the callback JSON line for TASKID (max 5 s)
wait_cb() {
    local i
    for i in $(seq 1 100); do
        if grep -q "$1" "$T/cb.log"; then grep "$1" "$T/cb.log" | head -n1; return 0; fi
        sleep 0.05
    done
    return 1
}

# -------------------------------------------------------------------- auth
req POST /api/v1/jobs/createTask "$(mkbody "$WWW/in.png")" -H "Content-Type: application/json"
eq "auth: no header -> HTTP 401" "$CODE" 401
eq "auth: no header -> code 401 msg" "$(jv "$BODY" 'd["code"], d["msg"]')" "(401, 'You do not have access permissions')"
req POST /api/v1/jobs/createTask "$(mkbody "$WWW/in.png")" -H "Authorization: Bearer wrong" -H "Content-Type: application/json"
eq "auth: wrong key -> HTTP 401" "$CODE" 401
req POST /api/v1/jobs/createTask "$(mkbody "$WWW/in.png")" -H "Authorization: $KEY"
eq "auth: key without Bearer -> HTTP 401" "$CODE" 401
req GET "/api/v1/jobs/recordInfo?taskId=x" ""
eq "auth: recordInfo without key -> HTTP 401" "$CODE" 401

# -------------------------------------------------------------- validation
LONG=$("$PY" -c 'print("x"*5001)')
while IFS='|' read -r name body want; do
    [ -n "$name" ] || continue
    body=${body//@WWW@/$WWW}
    body=${body//@LONG@/$LONG}
    create "$body"
    eq "validate: $name -> HTTP 200" "$CODE" 200
    eq "validate: $name -> code 422, data null" "$(jv "$BODY" 'd["code"], d["data"]')" "(422, None)"
    has "validate: $name -> msg" "$(jv "$BODY" 'd["msg"]')" "$want"
done <<'EOF'
not json|{"model":|not valid JSON
array body|[1,2]|JSON object
wrong model|{"model":"flux-2/pro-text-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|model flux-2/pro-text-to-image is not supported
missing model|{"input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|model is required
missing input|{"model":"flux-2/pro-image-to-image"}|input is required
missing input_urls|{"model":"flux-2/pro-image-to-image","input":{"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|input.input_urls is required
empty input_urls|{"model":"flux-2/pro-image-to-image","input":{"input_urls":[],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|1-8 URLs, got 0
9 input_urls|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["http://a/1","http://a/2","http://a/3","http://a/4","http://a/5","http://a/6","http://a/7","http://a/8","http://a/9"],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|1-8 URLs, got 9
ftp url|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png","ftp://127.0.0.1/x.png"],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|input.input_urls[1] is not a valid http(s) URL
number url|{"model":"flux-2/pro-image-to-image","input":{"input_urls":[42],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|input.input_urls[0]
short prompt|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"ab","aspect_ratio":"1:1","resolution":"1K"}}|3-5000 characters, got 2
long prompt|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"@LONG@","aspect_ratio":"1:1","resolution":"1K"}}|got 5001
missing prompt|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"aspect_ratio":"1:1","resolution":"1K"}}|input.prompt is required
bad aspect|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","aspect_ratio":"5:4","resolution":"1K"}}|input.aspect_ratio
missing aspect|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","resolution":"1K"}}|input.aspect_ratio is required
bad resolution|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","aspect_ratio":"1:1","resolution":"4K"}}|input.resolution
missing resolution|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","aspect_ratio":"1:1"}}|input.resolution is required
bad callBackUrl|{"model":"flux-2/pro-image-to-image","callBackUrl":"not a url","input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}|callBackUrl
bad nsfw_checker|{"model":"flux-2/pro-image-to-image","input":{"input_urls":["@WWW@/in.png"],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K","nsfw_checker":"yes"}}|nsfw_checker
EOF
# a 3-character prompt in multi-byte UTF-8 is 3 characters, not 9 bytes
create '{"model":"flux-2/pro-image-to-image","input":{"input_urls":["http://10.255.255.1/x.png"],"prompt":"äöü","aspect_ratio":"1:1","resolution":"2K","nsfw_checker":false}}'
eq "validate: 3 UTF-8 chars accepted" "$(jv "$BODY" 'd["code"]')" 200
req POST /api/v1/jobs/createTask "$("$PY" -c 'print("{\"a\":\"" + "x"*70000 + "\"}")')" "${auth[@]}"
eq "validate: 70 KB body -> HTTP 413" "$CODE" 413

# ---------------------------------------------------- success lifecycle
# a frozen task (60 s steps) shows the fields of a running task deterministically
config '{"step_ms":60000}'
create "$(mkbody "$WWW/in.png")"
TIDW=$(jv "$BODY" 'd["data"]["taskId"]')
config '{"step_ms":150}'
record "$TIDW"
eq "record: new task is waiting" "$(jv "$BODY" 'd["data"]["state"]')" waiting
eq "record: envelope code/message" "$(jv "$BODY" 'd["code"], d["message"]')" "(200, 'success')"
eq "record: running task has resultJson/failCode/failMsg '' and costTime/completeTime null" \
   "$(jv "$BODY" 'x=d["data"]; (x["resultJson"], x["failCode"], x["failMsg"], x["costTime"], x["completeTime"])')" "('', '', '', None, None)"
req GET "/results/$TIDW.png"
eq "result: running task -> 404" "$CODE" 404

# in_order STATES FINAL: observed states are an ordered subsequence ending in FINAL
in_order() { "$PY" -c 'import sys
seq=["waiting","queuing","generating",sys.argv[2]]; got=sys.argv[1].split(); it=iter(seq)
sys.exit(0 if got and got[-1]==sys.argv[2] and all(g in it for g in got) else 1)' "$1" "$2"; }
# state_times TASKID FINAL MIN: /sim/tasks stateTimes has all four states, each >= MIN ms apart
# (steps are timed on the monotonic clock, stateTimes are wall-clock ms: allow a little slack)
state_times() { req GET /sim/tasks; "$PY" -c 'import json,sys
t=[t for t in json.loads(sys.argv[1])["tasks"] if t["taskId"]==sys.argv[2]][0]["stateTimes"]
names=["waiting","queuing","generating",sys.argv[3]]; v=[t[n] for n in names]
sys.exit(0 if list(t)==names and all(b-a >= int(sys.argv[4]) for a,b in zip(v,v[1:])) else 1)' "$BODY" "$1" "$2" "$3"; }

req DELETE /sim/requests
CB="$LST/cb/ok" ASPECT=16:9 create "$(CB="$LST/cb/ok" mkbody "$WWW/in.png")"
eq "create: HTTP 200 code 200 msg success" "$CODE $(jv "$BODY" 'd["code"], d["msg"]')" "200 (200, 'success')"
TID=$(jv "$BODY" 'd["data"]["taskId"]')
check "create: taskId looks like task_flux-2_<digits>" grep -Eq '^task_flux-2_[0-9]{13,}$' <<<"$TID"
wait_state "$TID"
REC=$BODY
check "lifecycle: polled states in order ($STATES)" in_order "$STATES" success
check "lifecycle: stateTimes waiting>queuing>generating>success, >= 150 ms apart" state_times "$TID" success 145
eq "lifecycle: taskId/model" "$(jv "$REC" 'd["data"]["taskId"], d["data"]["model"]')" "('$TID', 'flux-2/pro-image-to-image')"
eq "lifecycle: param is the whole request as a JSON string" \
   "$(jv "$REC" 'json.loads(d["data"]["param"])["input"]["aspect_ratio"], json.loads(d["data"]["param"])["callBackUrl"]')" "('16:9', '$LST/cb/ok')"
eq "lifecycle: failCode/failMsg empty on success" "$(jv "$REC" 'd["data"]["failCode"], d["data"]["failMsg"]')" "('', '')"
eq "lifecycle: times are ms and ordered" \
   "$(jv "$REC" 'd["data"]["createTime"] > 1.6e12 and d["data"]["completeTime"] >= d["data"]["createTime"] + 450 and d["data"]["costTime"] == d["data"]["completeTime"] - d["data"]["createTime"]')" True
RURL=$(jv "$REC" 'json.loads(d["data"]["resultJson"])["resultUrls"][0]')
eq "lifecycle: resultUrl served by the sim" "$RURL" "$S/results/$TID.png"
curl -s -m 5 -o "$T/result.png" -D "$T/result.hdr" "$RURL"
has "result: content-type image/png" "$(tr -d '\r' <"$T/result.hdr")" "Content-Type: image/png"
PNGINFO=$("$PY" - "$T/result.png" <<'EOF'
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "signature"
i, idat, w = 8, b"", None
while i < len(b):
    n, = struct.unpack(">I", b[i:i+4]); t = b[i+4:i+8]; data = b[i+8:i+8+n]
    crc, = struct.unpack(">I", b[i+8+n:i+12+n])
    assert crc == zlib.crc32(t + data) & 0xffffffff, "crc " + t.decode()
    if t == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", data[:10])
    if t == b"IDAT": idat += data
    i += 12 + n
assert len(zlib.decompress(idat)) == h * (1 + 3 * w), "pixel data size"
print("%dx%d d%d c%d" % (w, h, depth, ctype))
EOF
)
eq "result: valid PNG (CRCs, pixel data), 16:9 at 1K = 1365x768" "$PNGINFO" "1365x768 d8 c2"
req GET "/results/task_flux-2_0000.png"
eq "result: unknown task -> 404" "$CODE" 404
req GET "/results/$TID.jpg"
eq "result: wrong suffix -> 404" "$CODE" 404
CBL=$(wait_cb "$TID") || CBL=""
eq "callback: success payload" \
   "$(jv "$CBL" 'b=json.loads(d["body"]); (d["path"], b["code"], b["msg"], b["data"]["taskId"], b["data"]["state"], b["data"]["failCode"])')" \
   "('/cb/ok', 200, 'Playground task completed successfully.', '$TID', 'success', None)"
eq "callback: resultJson/param are JSON strings" \
   "$(jv "$CBL" 'b=json.loads(d["body"])["data"]; (json.loads(b["resultJson"])["resultUrls"][0], json.loads(b["param"])["model"])')" \
   "('$RURL', 'flux-2/pro-image-to-image')"
eq "callback: content-type json, unsigned by default" "$(jv "$CBL" 'd["headers"]["content-type"], "x-webhook-signature" in d["headers"]')" "('application/json', False)"
req GET /sim/requests
eq "requests: createTask logged with model, aspect_ratio, resolution, auth_ok, content_type" \
   "$(jv "$BODY" '[(r["method"], r["body"]["model"], r["body"]["input"]["aspect_ratio"], r["body"]["input"]["resolution"], r["auth_ok"], r["content_type"]) for r in d["requests"] if r["path"]=="/api/v1/jobs/createTask"][0]')" \
   "('POST', 'flux-2/pro-image-to-image', '16:9', '1K', True, 'application/json')"
eq "requests: recordInfo logged with query taskId" \
   "$(jv "$BODY" '[r["query"]["taskId"] for r in d["requests"] if r["path"]=="/api/v1/jobs/recordInfo"][0]')" "$TID"
req DELETE /sim/requests
req GET /sim/requests
eq "requests: DELETE clears" "$(jv "$BODY" 'd["count"], len(d["requests"])')" "(0, 0)"
req GET /sim/tasks
eq "tasks: lists the task with callback status 200" \
   "$(jv "$BODY" '[(t["state"], t["callbackStatus"]) for t in d["tasks"] if t["taskId"]=="'"$TID"'"][0]')" "('success', 200)"

# aspect auto follows the first input; 3 inputs (PNG 64x48, JPEG 200x100, WEBP 300x100)
ASPECT=auto create "$(ASPECT=auto mkbody "$WWW/in.jpg" "$WWW/in.png" "http://localhost:$WWW_PORT/in.webp")"
TID2=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TID2"
eq "auto: JPEG+PNG+WEBP(localhost) inputs -> success" "$(jv "$BODY" 'd["data"]["state"]')" success
png_size() { "$PY" -c 'import struct,sys; print("%dx%d" % struct.unpack(">II", open(sys.argv[1],"rb").read()[16:24]))' "$1"; }
curl -s -m 5 -o "$T/auto.png" "$S/results/$TID2.png"
eq "auto: result follows JPEG 200x100 (2:1) at 1K -> 1448x724" "$(png_size "$T/auto.png")" 1448x724
RES=2K ASPECT=9:16 create "$(RES=2K ASPECT=9:16 mkbody "$WWW/in.webp")"
TID3=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TID3"
curl -s -m 5 -o "$T/tall.png" "$S/results/$TID3.png"
eq "2K 9:16 -> 1536x2731" "$(png_size "$T/tall.png")" 1536x2731
# result_style gradient: the older test pattern, sized from the sniffed header
config '{"result_style":"gradient"}'
ASPECT=auto create "$(ASPECT=auto mkbody "$WWW/hdr.jpg" "$WWW/hdr.webp")"
TIDG=$(jv "$BODY" 'd["data"]["taskId"]')
RES=2K ASPECT=9:16 create "$(RES=2K ASPECT=9:16 mkbody "$WWW/hdr.webp")"
TIDG2=$(jv "$BODY" 'd["data"]["taskId"]')
config '{"result_style":"studio"}'
wait_state "$TIDG"
eq "gradient: header-only JPEG+WEBP inputs -> success" "$(jv "$BODY" 'd["data"]["state"]')" success
curl -s -m 5 -o "$T/grad.png" "$S/results/$TIDG.png"
eq "gradient: auto follows the JPEG header 200x100 -> 256x128" "$(png_size "$T/grad.png")" 256x128
wait_state "$TIDG2"
curl -s -m 5 -o "$T/grad2.png" "$S/results/$TIDG2.png"
eq "gradient: 2K 9:16 -> 512x910" "$(png_size "$T/grad2.png")" 512x910
create "$(mkbody "$LST/redirect-in")"
TIDR=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDR"
eq "redirect within loopback is followed" "$(jv "$BODY" 'd["data"]["state"]')" success

# ------------------------------------------------------ download failures
dl_fail() { # dl_fail NAME URL[,URL2] WANT_SUBSTRING [MAX_MS]
    local t0 t1 tid
    t0=$(now_ms)
    create "$(IFS=,; mkbody $2)"
    tid=$(jv "$BODY" 'd["data"]["taskId"]')
    wait_state "$tid"
    t1=$(now_ms)
    eq "$1: state fail, failCode 422" "$(jv "$BODY" 'd["data"]["state"], d["data"]["failCode"]')" "('fail', '422')"
    has "$1: failMsg" "$(jv "$BODY" 'd["data"]["failMsg"]')" "$3"
    eq "$1: resultJson empty" "$(jv "$BODY" 'd["data"]["resultJson"]')" ""
    if [ -n "${4:-}" ]; then
        if [ $((t1 - t0)) -lt "$4" ]; then ok "$1: failed fast ($((t1 - t0)) ms)"; else bad "$1: failed fast" "$((t1 - t0)) ms"; fi
    fi
}
dl_fail "404 input" "$WWW/missing.png" "input image $WWW/missing.png could not be downloaded: HTTP 404"
dl_fail "not an image" "$WWW/notimage.txt" "is not a JPEG, PNG or WEBP image"
dl_fail "11 MB input" "$WWW/big.png" "is larger than 10 MB"
dl_fail "connection refused" "http://127.0.0.1:1/x.png" "could not be downloaded"
dl_fail "non-loopback IP" "http://10.255.255.1/x.png" "input image http://10.255.255.1/x.png is not reachable" 1000
dl_fail "non-loopback name" "http://example.invalid/x.png" "is not reachable: host example.invalid is not a loopback" 1000
dl_fail "localhost look-alike" "http://localhost.example.invalid/x.png" "is not reachable" 1000
dl_fail "IPv6 non-loopback" "http://[2001:db8::1]/x.png" "is not reachable" 1000
dl_fail "redirect to non-loopback IP" "$LST/redirect-out" "is not reachable" 1000
dl_fail "redirect to non-loopback name" "$LST/redirect-name" "is not reachable" 1000
dl_fail "second of two inputs missing" "$WWW/in.png,$WWW/nope.jpg" "$WWW/nope.jpg could not be downloaded: HTTP 404"

# -------------------------------------------------- outcome=fail + callbacks
config '{"outcome":"fail","fail_code":"501","fail_msg":"boom","webhook_hmac_key":"k1"}'
eq "config: POST answers full config" "$(jv "$BODY" 'd["outcome"], d["fail_code"], d["fail_msg"], d["step_ms"]')" "('fail', '501', 'boom', 150)"
create "$(CB="$LST/cb/fail" mkbody "$WWW/in.png")"
TIDF=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDF"
check "outcome fail: polled states in order ($STATES)" in_order "$STATES" fail
eq "outcome fail: failCode/failMsg/resultJson" "$(jv "$BODY" 'd["data"]["failCode"], d["data"]["failMsg"], d["data"]["resultJson"]')" "('501', 'boom', '')"
check "outcome fail: stateTimes waiting>queuing>generating>fail" state_times "$TIDF" fail 145
CBL=$(wait_cb "$TIDF") || CBL=""
eq "callback: failure payload" \
   "$(jv "$CBL" 'b=json.loads(d["body"]); (b["code"], b["msg"], b["data"]["state"], b["data"]["failCode"], b["data"]["failMsg"], b["data"]["resultJson"])')" \
   "(501, 'Playground task failed.', 'fail', '501', 'boom', None)"
eq "callback: HMAC signature valid" "$(jv "$CBL" '__import__("hmac").compare_digest(d["headers"]["x-webhook-signature"], __import__("base64").b64encode(__import__("hmac").new(b"k1", ("'"$TIDF"'." + d["headers"]["x-webhook-timestamp"]).encode(), "sha256").digest()).decode())')" True
req GET /results/$TIDF.png
eq "outcome fail: no result image" "$CODE" 404
config '{"reset":true}'
eq "config: reset restores start-up values" "$(jv "$BODY" 'd["outcome"], d["webhook_hmac_key"], d["create_mode"]')" "('success', '', 'normal')"
create "$(CB="http://10.255.255.1/cb" mkbody "$WWW/in.png")"
TIDC=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDC"
sleep 0.2
req GET /sim/tasks
has "callback: non-loopback callBackUrl not contacted" "$(jv "$BODY" '[t["callbackError"] for t in d["tasks"] if t["taskId"]=="'"$TIDC"'"][0]')" "is not reachable"
create "$(CB="$LST/cb/dlfail" mkbody "$WWW/missing.png")"
TIDD=$(jv "$BODY" 'd["data"]["taskId"]')
CBL=$(wait_cb "$TIDD") || CBL=""
eq "callback: download failure reported with 501/422" "$(jv "$CBL" 'b=json.loads(d["body"]); (b["code"], b["data"]["failCode"])')" "(501, '422')"

# ------------------------------------------------------------------ knobs
config '{"latency_ms":"x"}'
eq "config: bad type -> 400" "$CODE" 400
config '{"step_ms":-1}'
eq "config: out of range -> 400" "$CODE" 400
config '{"create_mode":"explode"}'
eq "config: bad mode -> 400" "$CODE" 400
config '{"nope":1}'
eq "config: unknown knob -> 400" "$CODE" 400
config '{"step_ms":10,"create_mode":"bogus"}'
req GET /sim/config
eq "config: failed update changes nothing" "$(jv "$BODY" 'd["step_ms"]')" 150

VALID=$(mkbody "$WWW/in.png")
mode_case() { # mode_case MODE WANT_HTTP WANT_CODE(or -)
    config "{\"create_mode\":\"$1\"}"
    create "$VALID"
    eq "create_mode $1: HTTP status" "$CODE" "$2"
    if [ "$3" != - ]; then eq "create_mode $1: body code" "$(jv "$BODY" 'd["code"]')" "$3"; fi
}
mode_case http500 500 -
has "create_mode http500: text body" "$BODY" "Internal Server Error"
mode_case nonjson 200 -
has "create_mode nonjson: HTML body" "$BODY" "<html>"
mode_case code401 200 401
mode_case code402 200 402
eq "create_mode code402: msg" "$(jv "$BODY" 'd["msg"]')" "Insufficient credits"
mode_case code422 200 422
mode_case code429 429 429
mode_case code455 200 455
mode_case code500 200 500
mode_case code501 200 501
config '{"create_mode":"reset"}'
create "$VALID"
check "create_mode reset: connection closed without a response (curl rc $CURL_RC)" test "$CURL_RC" = 52 -o "$CURL_RC" = 56
config '{"create_mode":"hang"}'
t0=$(now_ms)
curl -s -m 1 -o /dev/null "${auth[@]}" --data-binary "$VALID" "$S/api/v1/jobs/createTask"
rc=$?
t1=$(now_ms)
eq "create_mode hang: client times out (curl rc 28)" "$rc" 28
check "create_mode hang: held until the client gave up ($((t1 - t0)) ms)" test $((t1 - t0)) -ge 950
config '{"create_mode":"http500","create_mode_times":2}'
create "$VALID"; c1=$CODE
create "$VALID"; c2=$CODE
create "$VALID"; c3=$CODE
eq "create_mode_times 2: 500, 500, then normal" "$c1 $c2 $c3 $(jv "$BODY" 'd["code"]')" "500 500 200 200"
TIDM=$(jv "$BODY" 'd["data"]["taskId"]')
for m in http500:500 nonjson:200 code422:200 code429:429; do
    config "{\"record_mode\":\"${m%%:*}\"}"
    record "$TIDM"
    eq "record_mode ${m%%:*}: HTTP status" "$CODE" "${m##*:}"
done
has "record_mode code429: body" "$BODY" '"code":429'
config '{"record_mode":"code422"}'
record "$TIDM"
eq "record_mode code422: recordInfo is null" "$(jv "$BODY" 'd["msg"]')" "recordInfo is null"
config '{"record_mode":"reset"}'
record "$TIDM"
check "record_mode reset: no response (curl rc $CURL_RC)" test "$CURL_RC" = 52 -o "$CURL_RC" = 56
config '{"record_mode":"hang"}'
curl -s -m 0.5 -o /dev/null -H "Authorization: Bearer $KEY" "$S/api/v1/jobs/recordInfo?taskId=$TIDM"
eq "record_mode hang: client times out" "$?" 28
config '{"reset":true}'
record "$TIDM"
eq "modes reset: recordInfo normal again" "$(jv "$BODY" 'd["code"]')" 200
record "task_flux-2_0"
eq "recordInfo: unknown taskId" "$(jv "$BODY" 'd["code"], d["msg"], d["data"]')" "(422, 'recordInfo is null', None)"
req GET /api/v1/jobs/recordInfo "" -H "Authorization: Bearer $KEY"
eq "recordInfo: missing taskId -> 422" "$(jv "$BODY" 'd["code"]')" 422

# latency: 64 concurrent slow createTask calls must overlap, not queue
config '{"latency_ms":500}'
t0=$(now_ms)
LAT=()
for i in $(seq 1 64); do
    curl -s -m 10 -o "$T/lat.$i" "${auth[@]}" --data-binary "$VALID" "$S/api/v1/jobs/createTask" &
    LAT+=("$!")
done
for j in "${LAT[@]}"; do wait "$j"; done
t1=$(now_ms)
n200=$(cat "$T"/lat.* | grep -o '"code":200' | wc -l)
eq "latency: 64 concurrent requests all succeed" "$n200" 64
check "latency: 64 x 500 ms finished in $((t1 - t0)) ms (>= 500, < 3000)" test $((t1 - t0)) -ge 500 -a $((t1 - t0)) -lt 3000
config '{"latency_ms":0}'

# ---------------------------------------------------------- hostile input
"$PY" -c 'print("["*60000)' >"$T/deep.json"
req POST /api/v1/jobs/createTask "@$T/deep.json" "${auth[@]}"
eq "hostile: 60000-deep nesting -> 422" "$(jv "$BODY" 'd["code"]')" 422
head -c 4000 /dev/urandom >"$T/rand.bin"
req POST /api/v1/jobs/createTask "@$T/rand.bin" "${auth[@]}"
eq "hostile: random bytes -> 422" "$(jv "$BODY" 'd["code"]')" 422
"$PY" -c 'print("x"*200000)' >"$T/huge.txt"
req POST /api/v1/jobs/createTask "@$T/huge.txt" "${auth[@]}" -H "Transfer-Encoding: chunked"
eq "hostile: 200 KB chunked body -> 413" "$CODE" 413
req POST /sim/config "@$T/huge.txt"
eq "hostile: 200 KB config body -> 413" "$CODE" 413
req GET "/api/v1/jobs/recordInfo?taskId=%00%ff%fe$(printf 'A%.0s' $(seq 1 300))" "" -H "Authorization: Bearer $KEY"
eq "hostile: odd taskId -> 422" "$(jv "$BODY" 'd["code"]')" 422
create '{"model":"flux-2/pro-image-to-image","input":{"input_urls":["http://127.0.0.1:1/\u0000x"],"prompt":"abc","aspect_ratio":"1:1","resolution":"1K"}}'
eq "hostile: NUL in URL handled" "$CODE" 200
req PUT /api/v1/jobs/createTask
eq "router: wrong method -> 405" "$CODE" 405
req GET /nope
eq "router: unknown path -> 404" "$CODE" 404
printf 'GARBAGE \x01\x02\r\n\r\n' | timeout 2 "$PY" -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); s.sendall(sys.stdin.buffer.read()); s.settimeout(1)
try: s.recv(100)
except Exception: pass' "$SIM_PORT"
req GET /sim/config
eq "hostile: still alive after garbage" "$CODE" 200

# ------------------------------------------- second instance: CLI and caps
KIE_SIM_API_KEY=other-key "$SIM" --max-tasks 2 --step-ms=0 --outcome fail >"$T/b.out" 2>"$T/b.err" &
B_PID=$!
PIDS+=("$B_PID")
B_PORT=$(wait_port "$T/b.out" "kie-sim listening on port ") || B_PORT=0
check "cli: stdout is exactly the listening line" grep -qx "kie-sim listening on port $B_PORT" "$T/b.out"
B="http://127.0.0.1:$B_PORT"
bt=()
for i in 1 2 3; do
    bt+=("$(curl -s -m 5 -H "Authorization: Bearer other-key" --data-binary "$VALID" "$B/api/v1/jobs/createTask" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["taskId"])')")
done
check "cli: 3 distinct task ids" test "$(printf '%s\n' "${bt[@]}" | sort -u | wc -l)" = 3
eq "cli: env KIE_SIM_API_KEY replaces test-key" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$B/api/v1/jobs/recordInfo?taskId=${bt[2]}")" 401
eq "cap: oldest task evicted (max 2)" "$(curl -s -m 5 -H "Authorization: Bearer other-key" "$B/api/v1/jobs/recordInfo?taskId=${bt[0]}" | grep -o 'recordInfo is null')" "recordInfo is null"
sleep 0.2
eq "cli: --outcome fail --step-ms=0" "$(curl -s -m 5 -H "Authorization: Bearer other-key" "$B/api/v1/jobs/recordInfo?taskId=${bt[2]}" | grep -o '"state":"[a-z]*"')" '"state":"fail"'
eq "cap: /sim/tasks count" "$(curl -s -m 5 "$B/sim/tasks" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])')" 2
kill -INT "$B_PID"
wait "$B_PID"
eq "shutdown: SIGINT -> exit 0" "$?" 0

"$SIM" --help >"$T/help.txt" 2>&1
eq "cli: --help exits 0" "$?" 0
missing=""
for k in --host --port --api-key --max-tasks --latency-ms --step-ms --outcome --fail-code --fail-msg --create-mode \
         --record-mode --create-mode-times --record-mode-times --hang-max-ms --webhook-hmac-key KIE_SIM_PORT \
         KIE_SIM_API_KEY http500 nonjson hang reset code401 code402 code422 code429 code455 code500 code501 \
         --files-dir --files-max-bytes --files-max-count --upload-mode --upload-mode-times --upload-shape \
         --upload-max-bytes --upload-base64-max-bytes --upload-ttl-ms http401 code400 nourl openapi quickstart \
         /api/file-stream-upload /api/file-base64-upload /api/file-url-upload /kie-files/ /kie-download/ /sim/files \
         --max-result-bytes --result-style studio gradient \
         --initial-credits --price-1k --price-2k --refund-failed --credit-mode --credit-mode-times /api/v1/chat/credit \
         --rate-limit --rate-limit-max --rate-limit-window-ms; do
    grep -q -- "$k" "$T/help.txt" || missing="$missing $k"
done
eq "cli: --help documents every option, knob and mode" "$missing" ""
"$SIM" --port 70000 >/dev/null 2>&1; eq "cli: bad port -> exit 2" "$?" 2
"$SIM" --host 10.0.0.1 >/dev/null 2>&1; eq "cli: non-loopback --host refused" "$?" 2
"$SIM" --step-ms abc >/dev/null 2>&1; eq "cli: bad knob value -> exit 2" "$?" 2
"$SIM" --frobnicate 1 >/dev/null 2>&1; eq "cli: unknown option -> exit 2" "$?" 2
KIE_SIM_PORT=abc "$SIM" >/dev/null 2>&1; eq "cli: bad KIE_SIM_PORT -> exit 2" "$?" 2

# ------------------------------------------ shutdown with a hung request
config '{"create_mode":"hang"}'
curl -s -m 20 -o /dev/null "${auth[@]}" --data-binary "$VALID" "$S/api/v1/jobs/createTask" &
HC=$!
sleep 0.3
t0=$(now_ms)
kill -TERM "$MAIN_PID"
wait "$MAIN_PID"
rc=$?
t1=$(now_ms)
eq "shutdown: SIGTERM with a hung request -> exit 0" "$rc" 0
check "shutdown: prompt ($((t1 - t0)) ms < 3000)" test $((t1 - t0)) -lt 3000
wait "$HC" 2>/dev/null

# the newer features, each against its own simulator (same helpers and fixtures)
for part in upload result credits ratelimit failmatch; do
    # shellcheck source=/dev/null
    . "$ROOT/tests/sim/$part.sh"
done

for name in "${SIM_NAMES[@]}" b; do
    f="$T/$name.err"
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$f"; then
        bad "sanitizers: clean stderr in $(basename "$f")" "$(grep -m3 -E 'Sanitizer|runtime error' "$f")"
    else
        ok "sanitizers: clean stderr in $(basename "$f")"
    fi
done

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
