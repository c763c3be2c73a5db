# shellcheck shell=bash
# Shared by tests/container/image.sh and run.sh: where things live, the buildah command line, the tool check.
# Root, Debian 12; network: the Debian mirror apt already uses here, and loopback.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
W=${IMAGE_WORK:-$ROOT/build/image}                       # per checkout: container storage, archive, logs
CACHE=${IMAGE_CACHE:-/var/cache/product-photo-api}       # across checkouts: debootstrap output, one per day
IMG=${IMAGE_NAME:-localhost/product-photo-api:test}      # the image `make image` builds
ARCHIVE=$W/product-photo-api.tar                         # docker-archive of it (`docker load -i`)
# overlay where the kernel mounts it (fast, shares layers); vfs (a full copy per layer) elsewhere
if [ -z "${IMAGE_STORAGE_DRIVER:-}" ]; then
    IMAGE_STORAGE_DRIVER=vfs
    if grep -qw overlay /proc/filesystems 2>/dev/null && [ "$(id -u)" = 0 ]; then
        _o=$(mktemp -d) && mkdir -p "$_o/l" "$_o/u" "$_o/w" "$_o/m" \
            && mount -t overlay overlay -o "lowerdir=$_o/l,upperdir=$_o/u,workdir=$_o/w" "$_o/m" 2>/dev/null \
            && umount "$_o/m" && IMAGE_STORAGE_DRIVER=overlay
        rm -rf "$_o"; unset _o
    fi
fi
STORAGE=$W/storage-$IMAGE_STORAGE_DRIVER
B=(buildah --root "$STORAGE" --runroot "$W/runroot-$IMAGE_STORAGE_DRIVER" --storage-driver "$IMAGE_STORAGE_DRIVER")
PY=/usr/bin/python3

say() { printf '%s\n' "$*"; }
die() { printf 'image: %s\n' "$*" >&2; exit 1; }

# can_run: 0 if buildah and friends can run here. Otherwise prints one loud line and returns
#   1  SKIPPED: <tool> not installed    (or not root, or no namespaces: those only ever skip)
#   2  FAIL: <tool> not installed       under CI=true, for a Debian package `make deps` installs
can_run() {
    local t pkg
    for t in buildah:buildah debootstrap:debootstrap ip:iproute2 curl:curl unshare:util-linux nsenter:util-linux; do
        pkg=${t#*:}; t=${t%%:*}
        if ! command -v "$t" >/dev/null 2>&1; then
            if [ "${CI:-}" = true ]; then
                say "FAIL: $t not installed (Debian package $pkg; \`make deps\` installs it) - CI must build and test the image"
                return 2
            fi
            say "SKIPPED: $t not installed (Debian package $pkg; \`make deps\` installs it) - the container image is not built or tested"
            return 1
        fi
    done
    if [ "$(id -u)" != 0 ]; then
        say "SKIPPED: not root - buildah with vfs storage and chroot isolation needs root; the container image is not built or tested"
        return 1
    fi
    if ! unshare --net --mount --pid --fork true 2>/dev/null; then
        say "SKIPPED: cannot create network/mount/pid namespaces here (unshare failed) - the container image is not built or tested"
        return 1
    fi
    return 0
}

# The mirror this machine's apt uses (deb822 first, then one-line sources.list); never hard-coded.
apt_mirror() {
    local m=""
    m=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' | grep -v -- '-security' | grep -m1 . || true)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
    printf '%s\n' "${m%/}"
}
apt_security_mirror() {
    local m=""
    m=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' | grep -m1 -- '-security' || true)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$m" ] || m="$(apt_mirror)-security"
    printf '%s\n' "${m%/}"
}
