#!/usr/bin/env bash
# `make image`: build the Dockerfile into a local image without a Docker engine or a registry.
#
#   bash tests/container/image.sh [build|bases|sizes|clean]      (root, Debian 12, any directory)
#
# - Base images: debian:bookworm and debian:bookworm-slim are made from Debian packages (debootstrap
#   --variant=minbase from the mirror this machine's apt uses, upgraded, with the apt/dpkg settings the
#   official images carry; slim drops docs, man pages and locales like the official -slim) and committed
#   under their docker.io names, so the Dockerfile's FROM lines resolve locally. The upgraded debootstrap
#   output is cached per day in $IMAGE_CACHE (default /var/cache/product-photo-api), shared by checkouts.
# - The Lambda Web Adapter stage cannot be pulled: a stand-in image holding a dummy /lambda-adapter is
#   committed under the Dockerfile's repository:tag. A digest cannot be forged (it is the hash of the real
#   manifest), so the build reads a copy of the Dockerfile whose only change is that `@sha256:...` is cut
#   from that one reference (checked here); everything else builds unchanged.
# - buildah (overlay storage, or vfs where overlay cannot mount, in build/image/, chroot isolation, --layers cache, docker format so
#   HEALTHCHECK is kept), then a docker-archive build/image/product-photo-api.tar and the sizes.
# Without buildah/debootstrap it prints one `SKIPPED: <tool> not installed` line and exits 0; under CI=true
# that is a failure (`make deps` installs them).
set -euo pipefail
# shellcheck source=tests/container/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE=bookworm
DOCKERFILE=${IMAGE_DOCKERFILE:-$ROOT/Dockerfile}
CONTEXT=${IMAGE_CONTEXT:-$ROOT}

# Settings of the official debian images (debuerreotype): no package caches, no .debs left, gzip'd
# lists, no translations, unsafe-io. Written into both bases.
official_apt_settings() {
    local r=$1
    cat > "$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
    printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' > "$r/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Acquire::Languages "none";' > "$r/etc/apt/apt.conf.d/docker-no-languages"
    mkdir -p "$r/etc/dpkg/dpkg.cfg.d"
    echo 'force-unsafe-io' > "$r/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
}

# The upgraded minbase root file system of today, as a tar in $CACHE (made once a day, under a lock).
base_tar() {
    local mirror security key tar tmp
    mirror=$(apt_mirror); security=$(apt_security_mirror)
    key="$SUITE-$(date -u +%Y%m%d)-$(printf '%s %s' "$mirror" "$security" | sha256sum | cut -c1-8)"
    tar=$CACHE/debootstrap/$key.tar
    mkdir -p "$CACHE/debootstrap"
    exec 8>"$CACHE/debootstrap/.lock"
    flock 8
    if [ ! -s "$tar" ]; then
        say "image: debootstrap --variant=minbase $SUITE from $mirror (cached in $tar)" >&2
        tmp=$(mktemp -d "$CACHE/debootstrap/root.XXXXXX")
        chmod 755 "$tmp"          # it becomes the image's /
        debootstrap --variant=minbase "$SUITE" "$tmp" "$mirror" > "$CACHE/debootstrap/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap/debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
        rm -f "$tmp/etc/apt/sources.list"
        cat > "$tmp/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        official_apt_settings "$tmp"
        # The official images carry the current point release and security updates: upgrade too.
        unshare --mount --fork sh -c "mount -t proc proc '$tmp/proc' && chroot '$tmp' sh -c \
            'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade'" \
            > "$CACHE/debootstrap/upgrade.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap/upgrade.log" >&2; rm -rf "$tmp"; die "apt-get upgrade in the base failed"; }
        rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/cache/apt/archives/*.deb \
            "$tmp"/var/log/*.log "$tmp"/var/log/apt/* "$tmp"/tmp/* "$tmp"/root/.bash_history
        tar --numeric-owner --xattrs -C "$tmp" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
        rm -rf "$tmp"
        # keep the two newest days
        find "$CACHE/debootstrap" -maxdepth 1 -name "$SUITE-*.tar" -printf '%T@ %p\n' | sort -rn | tail -n +3 \
            | cut -d' ' -f2- | xargs -r rm -f
    fi
    exec 8>&-
    printf '%s\n' "$tar"
}

# import TAR NAME [slim]: a scratch container filled from TAR, committed as NAME.
import_base() {
    local tar=$1 name=$2 slim=${3:-} c m
    c=$("${B[@]}" from scratch)
    m=$("${B[@]}" mount "$c")
    tar --numeric-owner --xattrs -C "$m" -xf "$tar"
    if [ -n "$slim" ]; then
        # debuerreotype --slim: keep dpkg from installing docs, man pages, locales; drop those there are
        cat > "$m/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
        find "$m/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        find "$m/usr/share/doc" -mindepth 1 -type d -empty -delete
        rm -rf "$m"/usr/share/man/* "$m"/usr/share/info/* "$m"/usr/share/locale/* "$m"/usr/share/groff/* \
            "$m"/usr/share/lintian/overrides/*
    fi
    "${B[@]}" umount "$c" >/dev/null
    "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
        --os linux --arch amd64 "$c"
    "${B[@]}" commit -q --rm "$c" "$name" >/dev/null
}

bases() {
    local tar key
    tar=$(base_tar)
    key=$(basename "$tar" .tar)
    if [ "$(cat "$W/bases.key" 2>/dev/null)" = "$key" ] \
        && "${B[@]}" inspect --type image docker.io/library/debian:$SUITE >/dev/null 2>&1 \
        && "${B[@]}" inspect --type image docker.io/library/debian:$SUITE-slim >/dev/null 2>&1; then
        return 0
    fi
    say "image: importing debian:$SUITE and debian:$SUITE-slim ($key)"
    import_base "$tar" docker.io/library/debian:$SUITE
    import_base "$tar" docker.io/library/debian:$SUITE-slim slim
    echo "$key" > "$W/bases.key"
}

# The adapter reference in the Dockerfile (COPY --from=... or FROM ...), e.g.
# public.ecr.aws/awsguru/aws-lambda-adapter:1.1.0@sha256:<64 hex>
adapter_ref() {
    grep -oE '(--from=|^FROM[[:space:]]+)[^[:space:]]*aws-lambda-adapter[^[:space:]]*' "$DOCKERFILE" \
        | head -1 | sed -E 's/^(--from=|FROM[[:space:]]+)//'
}

# Stand-in for the adapter stage, and the Dockerfile copy the build reads.
adapter() {
    local ref tagref c m
    ref=$(adapter_ref)
    [ -n "$ref" ] || die "no aws-lambda-adapter reference in $DOCKERFILE"
    tagref=${ref%%@*}
    local old
    for old in $("${B[@]}" images --format '{{.Name}}:{{.Tag}}' | grep -F "${tagref%:*}:" | grep -vxF "$tagref"); do
        "${B[@]}" rmi -f "$old" >/dev/null 2>&1 || true     # a stand-in for an earlier pin
    done
    if ! "${B[@]}" inspect --type image "$tagref" >/dev/null 2>&1; then   # else made before: same content
        c=$("${B[@]}" from scratch)
        m=$("${B[@]}" mount "$c")
        printf '#!/bin/sh\necho "offline stand-in for the AWS Lambda Web Adapter (%s): not the real extension" >&2\nexit 0\n' \
            "$ref" > "$m/lambda-adapter"
        chmod 755 "$m/lambda-adapter"
        "${B[@]}" umount "$c" >/dev/null
        "${B[@]}" commit -q --rm "$c" "$tagref" >/dev/null
    fi
    # The copy: the same bytes but for "@sha256:..." on that reference.
    "$PY" - "$DOCKERFILE" "$W/Dockerfile.offline" "$ref" "$tagref" <<'EOF'
import sys
src, dst, ref, tagref = sys.argv[1:]
text = open(src).read()
out = text.replace(ref, tagref)
a, b = text.splitlines(), out.splitlines()
changed = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
if len(a) != len(b) or len(changed) > 1:
    sys.exit("image: the offline Dockerfile would differ in more than the adapter's digest")
open(dst, "w").write(out)
EOF
    if [ "$ref" != "$tagref" ]; then
        say "image: adapter stand-in is $tagref (the build reads the Dockerfile with ${ref#"$tagref"} cut from that line)"
    else
        say "image: adapter stand-in is $tagref"
    fi
}

build() {
    local rc=0
    can_run || rc=$?
    [ "$rc" = 0 ] || exit $((rc - 1))
    mkdir -p "$W"
    local t0 t1
    t0=$(date +%s)
    bases
    adapter
    say "image: buildah bud $DOCKERFILE -> $IMG (log: $W/build.log)"
    if ! (cd "$CONTEXT" && "${B[@]}" bud --pull=never --isolation chroot --layers --format docker \
            -f "$W/Dockerfile.offline" -t "$IMG" .) > "$W/build.log" 2>&1; then
        tail -40 "$W/build.log" >&2
        die "buildah bud failed (full log: $W/build.log)"
    fi
    prune
    local id
    id=$("${B[@]}" inspect --type image --format '{{.FromImageID}}' "$IMG")
    if [ "$(cat "$W/archive.id" 2>/dev/null)" != "$id" ] || [ ! -s "$ARCHIVE" ] || [ ! -s "$W/sizes.txt" ]; then
        rm -f "$ARCHIVE" "$W/archive.id"
        "${B[@]}" push -q "$IMG" "docker-archive:$ARCHIVE:product-photo-api:latest" >/dev/null
        sizes
        echo "$id" > "$W/archive.id"
    else
        read -r unc arc gz < "$W/sizes.txt"
        say "image: $IMG unchanged ($id); uncompressed $unc bytes, docker-archive $arc, gzip'd $gz"
    fi
    t1=$(date +%s)
    say "image: done in $((t1 - t0)) s; docker load -i $ARCHIVE"
}

# Drop the layer cache of earlier builds: every untagged image this build neither made nor reused.
prune() {
    local keep id
    keep=$(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11,64\}\)$/\2/p' "$W/build.log")
    for id in $("$PY" - "$STORAGE" "$IMAGE_STORAGE_DRIVER" <<'EOF'
import json, sys
root, driver = sys.argv[1:]
for i in json.load(open(f"{root}/{driver}-images/images.json")):
    if not i.get("names"):
        print(i["id"])
EOF
    ); do
        printf '%s\n' "$keep" | grep -q "^${id:0:11}" && continue
        "${B[@]}" rmi -f "$id" >/dev/null 2>&1 || true
    done
}

# sizes: uncompressed (the layers' content, as `docker images` counts it), the docker-archive, gzip'd.
sizes() {
    local id unc arc gz
    id=$("${B[@]}" inspect --type image --format '{{.FromImageID}}' "$IMG")
    unc=$("$PY" - "$STORAGE" "$IMAGE_STORAGE_DRIVER" "$id" <<'EOF'
import json, sys
root, driver, want = sys.argv[1:]
images = json.load(open(f"{root}/{driver}-images/images.json"))
layers = {l["id"]: l for l in json.load(open(f"{root}/{driver}-layers/layers.json"))}
top = next(i["layer"] for i in images if i["id"] == want)
total = 0
while top:
    total += layers[top].get("diff-size", 0)
    top = layers[top].get("parent")
print(total)
EOF
)
    arc=$(stat -c %s "$ARCHIVE")
    gz=$(gzip -6 -c "$ARCHIVE" | wc -c)
    printf '%s\n' "$unc $arc $gz" > "$W/sizes.txt"
    say "image: $IMG  uncompressed $(numfmt --to=si --suffix=B "$unc") ($unc bytes)," \
        "docker-archive $(numfmt --to=si --suffix=B "$arc"), gzip'd $(numfmt --to=si --suffix=B "$gz")"
}

clean() {
    "${B[@]}" rm --all >/dev/null 2>&1 || true
    "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$W"
}

case ${1:-build} in
    build) build ;;
    bases) rc=0; can_run || rc=$?; [ "$rc" = 0 ] || exit $((rc - 1)); mkdir -p "$W"; bases ;;
    sizes) sizes ;;
    clean) clean ;;
    *) die "usage: image.sh [build|bases|sizes|clean]" ;;
esac
