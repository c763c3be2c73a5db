# The simulated result in kie-sim: sourced by test_kie_sim.sh (its helpers,
# fixtures and counters). The first input fitted whole on a light studio
# background in the requested aspect_ratio and resolution, a "SIMULATED"
# mark, EXIF orientation, inputs that sniff as images but do not decode, and
# the --max-result-bytes budget. Pixels are read with the vips CLI.

start_sim result --step-ms 0
RES_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
echo "# result: kie-sim on $SIM_PORT"

"$PY" - "$T/www" <<'EOF'
import struct, sys, zlib, os
d = sys.argv[1]
def chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
def png(name, w, h, ctype, px, idat=None):
    bpp = 4 if ctype == 6 else 3
    raw = b"".join(b"\x00" + b"".join(bytes(px(x, y)) for x in range(w)) for y in range(h)) if idat is None else b""
    data = zlib.compress(raw) if idat is None else idat
    open(os.path.join(d, name), "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
                                        + chunk(b"IDAT", data) + chunk(b"IEND", b""))
# 120x80 RGBA: transparent, with an opaque red block in the middle
png("product.png", 120, 80, 6, lambda x, y: (200, 30, 30, 255) if 40 <= x < 80 and 20 <= y < 60 else (0, 0, 0, 0))
# a header claiming 20000x20000 pixels (400 megapixels) in a few bytes
png("bomb.png", 20000, 20000, 2, None, idat=zlib.compress(b"\x00" * 64))
EOF
exiftool -q -Orientation=6 -n -o "$T/www/rot.jpg" "$T/www/in.jpg" \
    || bad "fixture: exiftool could not tag rot.jpg"
head -c 300 "$T/www/in.jpg" >"$T/www/cut.jpg"

# result TASK_BODY NAME -> downloads the result of a new task to $T/NAME.png; sets RTID, BODY
result() {
    create "$1"
    RTID=$(jv "$BODY" 'd["data"]["taskId"]')
    wait_state "$RTID"
    curl -s -m 10 -o "$T/$2.png" "$S/results/$RTID.png"
}
px() { vips getpoint "$1" "$2" "$3" 2>/dev/null | sed 's/ *$//'; }
# region_min FILE LEFT TOP W H -> the darkest channel value in the region
region_min() { vips crop "$1" "$T/crop.v" "$2" "$3" "$4" "$5" && vips min "$T/crop.v" | cut -d. -f1; }
# light: "r g b" is a light, neutral studio grey
light() { "$PY" -c 'import sys; v=[int(x) for x in sys.argv[1].split()]; sys.exit(0 if len(v)==3 and min(v)>=220 and max(v)-min(v)<=8 else 1)' "$1"; }
near() { "$PY" -c 'import sys; a=[int(x) for x in sys.argv[1].split()]; b=[int(x) for x in sys.argv[2].split()]; sys.exit(0 if len(a)==len(b) and all(abs(p-q)<=24 for p,q in zip(a,b)) else 1)' "$1" "$2"; }
# size_ok FILE RATIO MEGAPIXELS: width/height within 1 % of RATIO, area within 3 % of the target
size_ok() { "$PY" -c 'import struct,sys; w,h=struct.unpack(">II", open(sys.argv[1],"rb").read()[16:24]); r=eval(sys.argv[2]); a=float(sys.argv[3])*1024*1024
sys.exit(0 if abs(w/h/r-1)<0.01 and abs(w*h/a-1)<0.03 else 1)' "$1" "$2" "$3"; }

# ----------------------------------------------------------- the picture
ASPECT=1:1 result "$(ASPECT=1:1 mkbody "$WWW/product.png")" product
eq "studio: 1:1 1K is 1024x1024" "$(png_size "$T/product.png")" 1024x1024
check "studio: corners are a light neutral background ($(px "$T/product.png" 4 4))" light "$(px "$T/product.png" 4 4)"
check "studio: top-right corner light too" light "$(px "$T/product.png" 1019 4)"
check "studio: the product's opaque middle is in the middle ($(px "$T/product.png" 512 512))" \
      near "$(px "$T/product.png" 512 512)" "200 30 30"
check "studio: the product's transparent part shows the background ($(px "$T/product.png" 154 296))" \
      light "$(px "$T/product.png" 154 296)"
check "studio: SIMULATED mark (dark pixels) in the bottom-right corner" test "$(region_min "$T/product.png" 853 991 159 21)" -lt 120
check "studio: no mark in the bottom-left corner" test "$(region_min "$T/product.png" 12 991 159 21)" -ge 200

# contain, not crop: a 2:1 JPEG in a square keeps its whole width, with background above and below
ASPECT=1:1 result "$(ASPECT=1:1 mkbody "$WWW/in.jpg")" contain
check "contain: background above the product ($(px "$T/contain.png" 512 200))" light "$(px "$T/contain.png" 512 200)"
check "contain: background left of the product ($(px "$T/contain.png" 40 512))" light "$(px "$T/contain.png" 40 512)"
check "contain: the product spans the width ($(px "$T/contain.png" 100 512))" near "$(px "$T/contain.png" 100 512)" "200 40 40"
check "contain: ... to its far side ($(px "$T/contain.png" 924 512))" near "$(px "$T/contain.png" 924 512)" "200 40 40"

# ------------------------------------------------------- sizes and ratios
for a in 1:1 4:3 3:4 16:9 9:16 3:2 2:3; do
    ASPECT=$a result "$(ASPECT=$a mkbody "$WWW/in.png")" "r${a/:/x}"
    check "size: $a at 1K ($(png_size "$T/r${a/:/x}.png")) matches the ratio and ~1 megapixel" size_ok "$T/r${a/:/x}.png" "${a/:/\/}" 1
done
for a in 1:1 16:9 2:3; do
    RES=2K ASPECT=$a result "$(RES=2K ASPECT=$a mkbody "$WWW/in.png")" "k${a/:/x}"
    check "size: $a at 2K ($(png_size "$T/k${a/:/x}.png")) matches the ratio and ~4 megapixels" size_ok "$T/k${a/:/x}.png" "${a/:/\/}" 4
done
ASPECT=auto result "$(ASPECT=auto mkbody "$WWW/in.png" "$WWW/in.jpg")" auto43
check "size: auto follows the first input (64x48 = 4:3) at 1K ($(png_size "$T/auto43.png"))" size_ok "$T/auto43.png" 4/3 1
RES=2K ASPECT=auto result "$(RES=2K ASPECT=auto mkbody "$WWW/in.webp")" auto31
check "size: auto with a 300x100 WEBP at 2K is 3:1 ($(png_size "$T/auto31.png"))" size_ok "$T/auto31.png" 3 4
ASPECT=auto result "$(ASPECT=auto mkbody "$WWW/rot.jpg")" rot
check "size: EXIF orientation 6 turns the 200x100 JPEG upright, 1:2 ($(png_size "$T/rot.png"))" size_ok "$T/rot.png" 1/2 1
req GET /sim/tasks
eq "tasks: resultWidth/resultHeight/resultBytes of the last task" \
   "$(jv "$BODY" 't=[t for t in d["tasks"] if t["taskId"]=="'"$RTID"'"][0]; "%dx%d" % (t["resultWidth"], t["resultHeight"]), t["resultBytes"] == '"$(stat -c %s "$T/rot.png")"'')" \
   "('$(png_size "$T/rot.png")', True)"

# ------------------------------------------ inputs that do not decode
create "$(mkbody "$WWW/hdr.jpg")"
TIDH=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDH"
eq "decode: header-only JPEG first -> fail 422" "$(jv "$BODY" 'd["data"]["state"], d["data"]["failCode"]')" "('fail', '422')"
has "decode: failMsg names the input" "$(jv "$BODY" 'd["data"]["failMsg"]')" "input image $WWW/hdr.jpg could not be decoded"
req GET "/results/$TIDH.png"
eq "decode: no result for it" "$CODE" 404
create "$(mkbody "$WWW/in.png" "$WWW/hdr.jpg")"
TIDH2=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDH2"
eq "decode: only the first input is decoded (header-only second input is fine)" "$(jv "$BODY" 'd["data"]["state"]')" success
create "$(mkbody "$WWW/cut.jpg")"
TIDC=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDC"
eq "decode: truncated JPEG -> fail 422" "$(jv "$BODY" 'd["data"]["state"], d["data"]["failCode"]')" "('fail', '422')"
create "$(mkbody "$WWW/bomb.png")"
TIDB=$(jv "$BODY" 'd["data"]["taskId"]')
t0=$(now_ms)
wait_state "$TIDB"
has "decode: a 400-megapixel header is refused unread" "$(jv "$BODY" 'd["data"]["failMsg"]')" "20000x20000 pixels"
check "decode: ... quickly ($(( $(now_ms) - t0 )) ms)" test $(( $(now_ms) - t0 )) -lt 2000
config '{"outcome":"fail"}'
create "$(mkbody "$WWW/hdr.jpg")"
TIDO=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDO"
eq "decode: outcome=fail tasks make no result (their own failCode stays)" "$(jv "$BODY" 'd["data"]["failCode"]')" 500
config '{"reset":true}'
ONE=$(jv "$(curl -s -m 5 "$S/sim/tasks")" '[t for t in d["tasks"] if t["taskId"]=="'"$TIDH2"'"][0]["resultBytes"]')
stop_sim "$RES_PID" result

# ------------------------------------------------- the result budget
start_sim result-cap --step-ms 0 --max-result-bytes $((ONE * 3 / 2))
CAPR_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
result "$(mkbody "$WWW/in.png" "$WWW/hdr.jpg")" cap1
T1=$RTID
result "$(mkbody "$WWW/in.png" "$WWW/hdr.jpg")" cap2
eq "budget: the newest result is served" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$S/results/$RTID.png")" 200
eq "budget: the oldest result is dropped beyond --max-result-bytes" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$S/results/$T1.png")" 404
stop_sim "$CAPR_PID" result-cap
start_sim result-tiny --step-ms 0 --max-result-bytes 1000
TINY_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
create "$(mkbody "$WWW/in.png")"
TIDT=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDT"
eq "budget: a result larger than the whole budget fails the task (500)" \
   "$(jv "$BODY" 'd["data"]["state"], d["data"]["failCode"], "max-result-bytes" in d["data"]["failMsg"]')" "('fail', '500', True)"
stop_sim "$TINY_PID" result-tiny
