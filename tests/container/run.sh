#!/usr/bin/env bash
# `make test-image`: check the files, then run the image `make image` built the way Docker and Lambda would.
#
#   KIE_SIM_BIN=build/kie-sim bash tests/container/run.sh
#
# 1. Static: tests/container/check_files.py --self-test (Dockerfile and docker-compose.yml, and each check
#    shown to catch the defect it is for). Runs everywhere (python3-yaml).
# 2. The image (skipped with one SKIPPED line where buildah cannot run, a failure under CI=true when a Debian
#    package is missing): its config (USER, HEALTHCHECK, EXPOSE, VOLUME) in the image and in the docker-archive;
#    runtime libraries only (no compiler, no headers, no -dev packages, no apt lists); every library resolves;
#    the size budget.
# 3. Like `docker run -v uploads:/app/uploads`: the container's root file system (a writable layer over the
#    image), the image's USER, WORKDIR, ENV and ENTRYPOINT+CMD, the server as PID 1 of its own PID namespace,
#    a network namespace of its own (127.0.0.1:8000 clashes with nothing; no route out), the volume a fresh
#    directory initialised like Docker does. /healthz, uid 10001 without capabilities, HEALTHCHECK (run by
#    `buildah run`, as Docker's health checker execs it) passes and, with no server, fails; a JPEG and a HEIC
#    upload land in the volume as JPEG; upload -> generate -> status against the KIE simulator
#    (build/kie-sim on the same loopback; it downloads the upload from the server like KIE does); SIGTERM
#    stops it within 2 s with status 0.
# 4. Like Lambda: the image root read-only, a tmpfs /tmp, uid 993 (not the image's USER), the image's ENV plus
#    the environment template.yaml / main.tf give the function plus what Lambda adds (AWS_LAMBDA_FUNCTION_NAME,
#    a session token, ...): with USE_S3=1 as deployed, /healthz, /config and a presigned /upload-url; with
#    USE_S3=0, an upload lands in /tmp/uploads. The Lambda Web Adapter itself is a stand-in here (image.sh).
# Prints "N passed, N failed"; exit status 1 if anything failed.
set -u
# shellcheck source=tests/container/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KIE_SIM_BIN=${KIE_SIM_BIN:-$ROOT/build/kie-sim}
IMAGE_MAX_BYTES=${IMAGE_MAX_BYTES:-260000000}   # uncompressed; 238 MB measured on 2026-12-01 (libvips and its deps)
SIM_PORT=8001
SIM_KEY=sim-key
LAMBDA_UID=993
LAMBDA_GID=990
T=$W/test
PASS=0
FAIL=0
CTRS=()
PIDS=()
H=""

ok()  { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1${2:+ ($2)}"; }
check() { local n=$1; shift; if "$@"; then ok "$n"; else bad "$n"; fi; }
eq() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi; }
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" = 0 ]
    exit $?
}
cleanup() {
    local p c
    for p in "${PIDS[@]}"; do
        for c in $(pgrep -P "$p"); do kill -KILL "$c" 2>/dev/null; done   # a launcher's PID 1
        kill -KILL "$p" 2>/dev/null
    done
    [ -n "$H" ] && kill -KILL "$H" 2>/dev/null   # unshare --fork blocks SIGTERM; --kill-child ends the sleep
    { wait; } 2>/dev/null
    for c in "${CTRS[@]}"; do
        "${B[@]}" umount "$c" >/dev/null 2>&1
        "${B[@]}" rm "$c" >/dev/null 2>&1
    done
} 2>/dev/null   # no "Killed" notices
trap cleanup EXIT

# ---------------------------------------------------------------- 1. the files
echo "# Dockerfile and docker-compose.yml"
if ! "$PY" -c 'import yaml' 2>/dev/null; then
    if [ "${CI:-}" = true ]; then
        bad "python3-yaml installed" "Debian package python3-yaml; \`make deps\` installs it"
    else
        echo "SKIPPED: python3-yaml not installed (Debian package python3-yaml; \`make deps\` installs it) - compose checks not run"
    fi
else
    while IFS= read -r line; do
        case $line in
            "ok   - "*) ok "${line#ok   - }" ;;
            "FAIL - "*) bad "${line#FAIL - }" ;;
            *) echo "$line" ;;
        esac
    done < <("$PY" "$ROOT/tests/container/check_files.py" --self-test 2>&1 || true)
fi

# ---------------------------------------------------------------- 2. the image
echo "# the image"
rc=0; can_run || rc=$?
[ "$rc" = 2 ] && FAIL=$((FAIL + 1))
[ "$rc" = 0 ] || finish
if ! "${B[@]}" inspect --type image "$IMG" >/dev/null 2>&1; then
    bad "image $IMG exists" "run \`make image\` first"
    finish
fi
rm -rf "$T"; mkdir -p "$T"

# The image's config as shell arrays (what docker run / Lambda read from it).
eval "$("${B[@]}" inspect --type image "$IMG" | "$PY" -c '
import json, shlex, sys
c = json.load(sys.stdin)["Docker"]["config"]
def arr(name, v): print(f"{name}=(" + " ".join(shlex.quote(x) for x in (v or [])) + ")")
print("CFG_USER=" + shlex.quote(c.get("User") or ""))
print("CFG_WORKDIR=" + shlex.quote(c.get("WorkingDir") or "/"))
arr("CFG_ENTRY", (c.get("Entrypoint") or []) + (c.get("Cmd") or []))
arr("CFG_ENV", c.get("Env"))
arr("CFG_VOLUMES", sorted(c.get("Volumes") or {}))
arr("CFG_PORTS", sorted((c.get("ExposedPorts") or {})))
hc = (c.get("Healthcheck") or {}).get("Test") or []
arr("CFG_HC_TEST", hc)
print("CFG_HC_TIMEOUT=%d" % (int((c.get("Healthcheck") or {}).get("Timeout") or 30e9) // 10**9))
')"
CFG_HC=("${CFG_HC_TEST[@]:1}")
eq "image USER" "$CFG_USER" app
eq "image EXPOSE" "${CFG_PORTS[*]}" 8000/tcp
eq "image VOLUME" "${CFG_VOLUMES[*]}" /app/uploads
eq "image HEALTHCHECK kept (docker format)" "${CFG_HC_TEST[*]}" "CMD /usr/local/bin/product-photo-api healthcheck"
eq "image ENTRYPOINT+CMD" "${CFG_ENTRY[*]}" "/usr/local/bin/product-photo-api serve"

# The archive a user would `docker load`: tagged, with the same config.
if [ -s "$ARCHIVE" ]; then
    r=$("$PY" - "$ARCHIVE" <<'EOF'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
m = json.load(t.extractfile("manifest.json"))
c = json.load(t.extractfile(m[0]["Config"]))["config"]
tag = "product-photo-api:latest" in [x.replace("docker.io/library/", "") for x in m[0].get("RepoTags") or []]
print(len(m), tag, c.get("User"), (c.get("Healthcheck") or {}).get("Test"), sorted(c.get("ExposedPorts") or {}))
EOF
)
    eq "docker-archive: one image tagged product-photo-api:latest, USER, HEALTHCHECK, EXPOSE" "$r" \
        "1 True app ['CMD', '/usr/local/bin/product-photo-api', 'healthcheck'] ['8000/tcp']"
else
    bad "docker-archive $ARCHIVE exists" "run \`make image\`"
fi

RUNC=ppa-test-run
"${B[@]}" rm "$RUNC" >/dev/null 2>&1
"${B[@]}" from -q --pull=never --name "$RUNC" "$IMG" >/dev/null || { bad "buildah from $IMG"; finish; }
CTRS+=("$RUNC")
M=$("${B[@]}" mount "$RUNC")

# USER as numbers, from the image's own /etc/passwd
APP_UID=$(awk -F: -v u="$CFG_USER" '$1 == u || $3 == u { print $3; exit }' "$M/etc/passwd")
APP_GID=$(awk -F: -v u="$CFG_USER" '$1 == u || $3 == u { print $4; exit }' "$M/etc/passwd")
APP_HOME=$(awk -F: -v u="$CFG_USER" '$1 == u || $3 == u { print $6; exit }' "$M/etc/passwd")
eq "USER app is uid 10001" "$APP_UID" 10001
eq "/app/uploads in the image belongs to app" "$(stat -c %u "$M/app/uploads")" "$APP_UID"

# Runtime libraries only.
cc=$(cd "$M" && ls -d usr/bin/cc usr/bin/gcc usr/bin/gcc-* usr/bin/c++ usr/bin/g++ usr/bin/clang usr/bin/*-linux-gnu-gcc* \
    usr/lib/gcc/*/*/cc1 2>/dev/null | tr '\n' ' ')
eq "no compiler (cc, gcc, cc1) in the image" "$cc" ""
inc=$(find "$M/usr/include" -mindepth 1 2>/dev/null | head -3 | sed "s|^$M||" | tr '\n' ' ')
eq "/usr/include empty or absent" "$inc" ""
dev=$(chroot "$M" dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 ~ /^.i/ && $2 ~ /-dev(:|$)/ { print $2 }' | tr '\n' ' ')
eq "no -dev packages installed" "$dev" ""
lists=$(find "$M/var/lib/apt/lists" "$M/var/cache/apt" -type f ! -name lock 2>/dev/null | head -3 | sed "s|^$M||" | tr '\n' ' ')
eq "no apt lists or package caches" "$lists" ""
nf=$(chroot "$M" sh -c 'ldd /usr/local/bin/product-photo-api; for m in /usr/lib/*/vips-modules-*/*.so; do ldd "$m"; done' 2>&1 \
    | grep -E 'not found|No such file' | sort -u | tr '\n' ' ')
eq "the binary's and libvips modules' libraries all resolve" "$nf" ""
check "libvips' HEIF module and libheif's HEVC decoder are in the image" \
    sh -c "ls '$M'/usr/lib/*/vips-modules-*/vips-heif.so >/dev/null && ls '$M'/usr/lib/*/libde265.so.* >/dev/null"
check "/opt/extensions/lambda-adapter is executable (the adapter stage's file; a stand-in here)" test -x "$M/opt/extensions/lambda-adapter"
if [ -s "$W/sizes.txt" ]; then
    read -r unc arc gz < "$W/sizes.txt"
    echo "# size: uncompressed $unc bytes, docker-archive $arc bytes, gzip'd $gz bytes"
    if [ "$unc" -le "$IMAGE_MAX_BYTES" ]; then ok "image within $IMAGE_MAX_BYTES bytes uncompressed ($unc)"
    else bad "image within $IMAGE_MAX_BYTES bytes uncompressed" "$unc: something that is not a runtime library came in?"; fi
fi

# ---------------------------------------------------------------- test files
# A real JPEG (Pillow) and a HEIC made from it (heif-enc, libheif-examples).
if "$PY" - "$T/photo.jpg" <<'EOF'
import sys
from PIL import Image, ImageDraw
im = Image.new("RGB", (640, 480))
d = ImageDraw.Draw(im)
for y in range(480):
    d.line([(0, y), (639, y)], fill=(y // 2, y // 2, y // 2))
d.rectangle([160, 120, 480, 360], fill=(200, 40, 40))
d.ellipse([180, 140, 280, 220], fill=(40, 40, 200))
im.save(sys.argv[1], "JPEG", quality=90)
EOF
then ok "a JPEG made with Pillow"; else bad "a JPEG made with Pillow" "python3-pil"; fi
if command -v heif-enc >/dev/null 2>&1; then
    if heif-enc -q 60 -o "$T/photo.heic" "$T/photo.jpg" >/dev/null 2>&1 && head -c 12 "$T/photo.heic" | grep -q ftypheic; then
        ok "a HEIC made with heif-enc"
    else
        bad "a HEIC made with heif-enc"
    fi
else
    bad "heif-enc installed" "Debian package libheif-examples; \`make deps\` installs it"
fi

# ---------------------------------------------------------------- helpers for the runs
# A network namespace with only loopback, held open by a sleeping process.
unshare --net --fork --kill-child sh -c 'ip link set lo up && echo up && exec sleep 86400' > "$T/netns.log" 2>&1 &
H=$!
for _ in $(seq 50); do grep -q up "$T/netns.log" 2>/dev/null && break; sleep 0.05; done
NS=(nsenter "--net=/proc/$H/ns/net")
nscurl() { "${NS[@]}" curl -s --max-time 20 "$@"; }
jget() { "$PY" -c 'import json,sys
try:
    d = json.loads(sys.argv[1]); v = eval(sys.argv[2], {"d": d})
    print(v if isinstance(v, str) else json.dumps(v))
except Exception as e:
    print("<%s>" % e)' "$1" "$2"; }

# launch NAME ROOTFS UID GID MODE VOLUME ENV... -- ARGV...: start ARGV as PID 1 of new PID and mount namespaces
# in the test network namespace, chrooted into ROOTFS (MODE rw, or ro + a tmpfs /tmp), with a Docker-like /dev
# and /proc, VOLUME (host:container or -) bound, exactly the environment ENV, in the image's WORKDIR.
# Sets LPID (the namespace launcher) and SPID (the server, once it answers).
launch() {
    local name=$1 rootfs=$2 uid=$3 gid=$4 mode=$5 vol=$6; shift 6
    local env=() a r=$T/$name.root
    while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
    mkdir -p "$r"
    {
        echo 'set -e'
        echo 'mount --make-rprivate /'
        printf 'mount --bind %q %q\n' "$rootfs" "$r"
        [ "$mode" = ro ] && printf 'mount -o remount,bind,ro %q\n' "$r"
        printf 'mount -t proc proc %q/proc\n' "$r"
        printf 'mount -t tmpfs -o mode=755,size=1m tmpfs %q/dev\n' "$r"
        printf 'for n in null zero full random urandom; do : > %q/dev/$n; mount --bind /dev/$n %q/dev/$n; done\n' "$r" "$r"
        printf 'mkdir %q/dev/shm && mount -t tmpfs -o mode=1777,size=64m tmpfs %q/dev/shm\n' "$r" "$r"
        [ "$mode" = ro ] && printf 'mount -t tmpfs -o mode=1777,size=512m tmpfs %q/tmp\n' "$r"
        [ "$vol" != - ] && printf 'mount --bind %q %q\n' "${vol%%:*}" "$r${vol#*:}"
        printf 'exec chroot --userspec=%s:%s %q /usr/bin/env -i --chdir=%q' "$uid" "$gid" "$r" "$CFG_WORKDIR"
        for a in "${env[@]}" "$@"; do printf ' %q' "$a"; done
        echo
    } > "$T/$name.sh"
    setsid "${NS[@]}" unshare --mount --pid --fork bash "$T/$name.sh" > "$T/$name.log" 2>&1 &
    LPID=$!
    PIDS+=("$LPID")
    SPID=""
}
# wait_ready NAME: /healthz 200 within 10 s; sets SPID
wait_ready() {
    local i
    for i in $(seq 100); do
        if [ "$(nscurl -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/healthz)" = 200 ]; then
            SPID=$(pgrep -P "$LPID" | head -1)
            PIDS+=("$SPID")
            return 0
        fi
        kill -0 "$LPID" 2>/dev/null || break
        sleep 0.1
    done
    echo "--- $1.log"; tail -20 "$T/$1.log"
    return 1
}
# stop_within NAME SECONDS: SIGTERM to the server (as `docker stop` does to PID 1); 0 if it exits in time with 0
stop_within() {
    local t0 t1 rc
    [ -n "$SPID" ] || return 1
    t0=$(date +%s%N)
    kill -TERM "$SPID"
    for _ in $(seq $(($2 * 20))); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.05; done
    t1=$(date +%s%N)
    if kill -0 "$LPID" 2>/dev/null; then
        echo "# $1: still running $2 s after SIGTERM"; kill -KILL "$SPID" 2>/dev/null; wait "$LPID" 2>/dev/null
        return 1
    fi
    wait "$LPID"; rc=$?
    echo "# $1: exited $rc, $(( (t1 - t0) / 1000000 )) ms after SIGTERM"
    [ "$rc" = 0 ]
}
# upload NAME FILE TYPE: POST /upload; sets UP (the answer) and UPCODE
upload() {
    UP=$(nscurl -w '\n%{http_code}' -F "file=@$2;type=$3" http://127.0.0.1:8000/upload)
    UPCODE=${UP##*$'\n'}; UP=${UP%$'\n'*}
}

# ---------------------------------------------------------------- 3. like docker run
echo "# like docker run (server PID 1, own network, volume at /app/uploads)"
VOL=$T/volume-uploads
mkdir -p "$VOL"
# A new named volume starts as a copy of the image's directory: same owner and mode.
chown "$(stat -c %u:%g "$M/app/uploads")" "$VOL"; chmod "$(stat -c %a "$M/app/uploads")" "$VOL"

"${NS[@]}" "$KIE_SIM_BIN" --port "$SIM_PORT" --api-key "$SIM_KEY" --step-ms 100 > "$T/sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do grep -q "listening on port" "$T/sim.log" 2>/dev/null && break; sleep 0.05; done
check "KIE simulator listening on 127.0.0.1:$SIM_PORT in the container's network" grep -q "listening on port $SIM_PORT" "$T/sim.log"

DOCKER_ENV=("${CFG_ENV[@]}" "HOSTNAME=ppa-test" "HOME=$APP_HOME"
    ALLOW_PRIVATE_INPUT_URLS=1 ALLOW_PRIVATE_FETCH=1 "KIE_BASE_URL=http://127.0.0.1:$SIM_PORT" "KIE_API_KEY=$SIM_KEY"
    PUBLIC_BASE_URL=http://127.0.0.1:8000)
launch docker "$M" "$APP_UID" "$APP_GID" rw "$VOL:/app/uploads" "${DOCKER_ENV[@]}" -- "${CFG_ENTRY[@]}"
if wait_ready docker; then
    ok "docker-like run: /healthz answers 200"
    st=$(grep -E '^(Uid|Gid|CapEff|NSpid)' "/proc/$SPID/status" | tr -s '\t\n' '  ')
    echo "# server: $st"
    eq "server runs as uid 10001 (real, effective, saved, fs)" "$(awk '/^Uid/ { print $2, $3, $4, $5 }' "/proc/$SPID/status")" "10001 10001 10001 10001"
    eq "server has no capabilities" "$(awk '/^CapEff/ { print $2 }' "/proc/$SPID/status")" 0000000000000000
    eq "server is PID 1 of its PID namespace (as in Docker)" "$(awk '/^NSpid/ { print $NF }' "/proc/$SPID/status")" 1

    if timeout $((CFG_HC_TIMEOUT + 5)) "${NS[@]}" "${B[@]}" run --isolation chroot "$RUNC" -- "${CFG_HC[@]}" > "$T/hc-up.log" 2>&1; then
        ok "HEALTHCHECK command exits 0 with the server up"
    else
        bad "HEALTHCHECK command exits 0 with the server up" "$(tail -1 "$T/hc-up.log")"
    fi

    upload docker "$T/photo.jpg" image/jpeg
    eq "JPEG upload answers 200" "$UPCODE" 200
    eq "JPEG upload: content_type image/jpeg" "$(jget "$UP" 'd["content_type"]')" image/jpeg
    JPG_URL=$(jget "$UP" 'd["url"]'); JPG_NAME=$(jget "$UP" 'd["filename"]')
    if [ -f "$VOL/$JPG_NAME" ] && [ "$(stat -c %u "$VOL/$JPG_NAME")" = "$APP_UID" ]; then
        ok "the upload is in the /app/uploads volume, written by uid $APP_UID"
    else
        bad "the upload is in the /app/uploads volume" "$(ls -ln "$VOL" | tail -n +2 | tr '\n' ' ')"
    fi
    eq "GET $JPG_URL -> 200 image/jpeg" "$(nscurl -o "$T/got.jpg" -w '%{http_code} %{content_type}' "http://127.0.0.1:8000$JPG_URL")" "200 image/jpeg"

    if [ -s "$T/photo.heic" ]; then
        upload docker "$T/photo.heic" image/heic
        eq "HEIC upload answers 200 (libvips' HEIF module and libheif's decoder work in the image)" "$UPCODE" 200
        eq "HEIC upload: stored as content_type image/jpeg" "$(jget "$UP" 'd["content_type"]')" image/jpeg
        n=$(jget "$UP" 'd["filename"]')
        check "the HEIC upload is a JPEG in the volume" sh -c "head -c 3 '$VOL/$n' | od -An -tx1 | grep -q 'ff d8 ff'"
    fi

    # upload -> generate -> status, KIE being the simulator on the same loopback
    G=$(nscurl -w '\n%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"input_url\":\"$JPG_URL\",\"prompt\":\"Studio product shot on a seamless white background\",\"aspect_ratio\":\"1:1\",\"resolution\":\"1K\"}" \
        http://127.0.0.1:8000/generate)
    eq "POST /generate answers 200" "${G##*$'\n'}" 200
    TASK=$(jget "${G%$'\n'*}" 'd["data"]["taskId"]')
    state=""
    for _ in $(seq 100); do
        S=$(nscurl "http://127.0.0.1:8000/status?task_id=$TASK")
        state=$(jget "$S" 'd["data"]["state"]')
        case $state in success|fail) break ;; esac
        sleep 0.1
    done
    eq "GET /status reaches state success" "$state" success
    RES=$(jget "$S" 'd["data"]["resultUrls"][0]')
    eq "the result URL answers 200 image/png" "$(nscurl -o /dev/null -w '%{http_code} %{content_type}' "$RES")" "200 image/png"
    check "KIE (the simulator) fetched the upload from the server" grep -q "GET $JPG_URL 200" "$T/docker.log"

    if stop_within docker 2; then ok "SIGTERM stops it within 2 s, exit status 0"; else bad "SIGTERM stops it within 2 s, exit status 0"; fi
    check "uploads stay in the volume after the container stopped" test -f "$VOL/$JPG_NAME"
    if timeout $((CFG_HC_TIMEOUT + 5)) "${NS[@]}" "${B[@]}" run --isolation chroot "$RUNC" -- "${CFG_HC[@]}" > "$T/hc-down.log" 2>&1; then
        bad "HEALTHCHECK command fails with no server"
    else
        ok "HEALTHCHECK command fails with no server ($(tail -1 "$T/hc-down.log" | cut -c1-80))"
    fi
else
    bad "docker-like run: /healthz answers 200 within 10 s"
fi
"${B[@]}" umount "$RUNC" >/dev/null 2>&1

# ---------------------------------------------------------------- 4. like Lambda
echo "# like Lambda (read-only root, tmpfs /tmp, uid $LAMBDA_UID, the templates' environment)"
LAMC=ppa-test-lambda
"${B[@]}" rm "$LAMC" >/dev/null 2>&1
"${B[@]}" from -q --pull=never --name "$LAMC" "$IMG" >/dev/null
CTRS+=("$LAMC")
LM=$("${B[@]}" mount "$LAMC")
if ! LENV=$("$PY" "$ROOT/tests/container/lambda_env.py" 2>&1); then
    bad "the function's environment from template.yaml and main.tf" "$LENV"
else
    ok "the function's environment from template.yaml and main.tf ($(echo "$LENV" | wc -l) variables)"
    mapfile -t LAMBDA_ENV <<< "$LENV"

    # as deployed: S3 storage
    launch lambda-s3 "$LM" "$LAMBDA_UID" "$LAMBDA_GID" ro - "${CFG_ENV[@]}" "${LAMBDA_ENV[@]}" -- "${CFG_ENTRY[@]}"
    if wait_ready lambda-s3; then
        ok "lambda-like run (USE_S3=1 as deployed): /healthz answers 200"
        eq "lambda-like: server runs as uid $LAMBDA_UID" "$(awk '/^Uid/ { print $2 }' "/proc/$SPID/status")" "$LAMBDA_UID"
        eq "lambda-like: /config says storage s3" "$(jget "$(nscurl http://127.0.0.1:8000/config)" 'd["storage"]')" s3
        U=$(nscurl -w '\n%{http_code}' -H 'Content-Type: application/json' -d '{"content_type":"image/jpeg","size":1000}' \
            http://127.0.0.1:8000/upload-url)
        eq "lambda-like: POST /upload-url answers 200" "${U##*$'\n'}" 200
        case $(jget "${U%$'\n'*}" 'd["upload_url"]') in
            *X-Amz-Security-Token=*) ok "lambda-like: the presigned URL carries the session token" ;;
            *) bad "lambda-like: the presigned URL carries the session token" "${U%$'\n'*}" ;;
        esac
        if stop_within lambda-s3 2; then ok "lambda-like: SIGTERM stops it within 2 s"; else bad "lambda-like: SIGTERM stops it within 2 s"; fi
    else
        bad "lambda-like run (USE_S3=1 as deployed): /healthz answers 200 within 10 s"
    fi

    # local storage: uploads go to /tmp/uploads
    launch lambda-local "$LM" "$LAMBDA_UID" "$LAMBDA_GID" ro - "${CFG_ENV[@]}" "${LAMBDA_ENV[@]}" USE_S3=0 -- "${CFG_ENTRY[@]}"
    if wait_ready lambda-local; then
        ok "lambda-like run (USE_S3=0): /healthz answers 200"
        upload lambda "$T/photo.jpg" image/jpeg
        eq "lambda-like: JPEG upload answers 200" "$UPCODE" 200
        eq "lambda-like: content_type image/jpeg" "$(jget "$UP" 'd["content_type"]')" image/jpeg
        n=$(jget "$UP" 'd["filename"]')
        if [ -f "/proc/$SPID/root/tmp/uploads/$n" ] && [ "$(stat -c %u "/proc/$SPID/root/tmp/uploads/$n")" = "$LAMBDA_UID" ]; then
            ok "lambda-like: the upload is in /tmp/uploads (tmpfs), written by uid $LAMBDA_UID"
        else
            bad "lambda-like: the upload is in /tmp/uploads" "$(ls -ln "/proc/$SPID/root/tmp/uploads" 2>&1 | tr '\n' ' ')"
        fi
        eq "lambda-like: GET it back -> 200 image/jpeg" \
            "$(nscurl -o /dev/null -w '%{http_code} %{content_type}' "http://127.0.0.1:8000$(jget "$UP" 'd["url"]')")" "200 image/jpeg"
        if grep -qi "read-only file system" "$T/lambda-local.log"; then bad "lambda-like: no writes outside /tmp" "$(grep -i -m1 'read-only' "$T/lambda-local.log")"
        else ok "lambda-like: no writes outside /tmp (nothing hit the read-only root)"; fi
        if stop_within lambda-local 2; then ok "lambda-like: SIGTERM stops it within 2 s"; else bad "lambda-like: SIGTERM stops it within 2 s"; fi
    else
        bad "lambda-like run (USE_S3=0): /healthz answers 200 within 10 s"
    fi
fi

finish
