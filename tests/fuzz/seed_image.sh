#!/usr/bin/env bash
# tests/fuzz/seed_image.sh OUTDIR - the seed corpus of fuzz_image, made with
# Debian tools (libvips' vips, libheif's heif-enc) rather than checked in:
# tiny pictures in every accepted format, with EXIF orientation, alpha, 16-bit,
# greyscale and CMYK variants. Quick (well under a second per file); skips
# what is already there.
set -euo pipefail
out=$1
mkdir -p "$out"
[ -f "$out/.done" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
vips xyz "$tmp/xy.v" 24 16
vips extract_band "$tmp/xy.v" "$tmp/x.v" 0
vips extract_band "$tmp/xy.v" "$tmp/y.v" 1
vips bandjoin "$tmp/x.v $tmp/y.v $tmp/x.v" "$tmp/rgbi.v"
vips linear "$tmp/rgbi.v" "$tmp/rgbs.v" 10 0
vips cast "$tmp/rgbs.v" "$tmp/rgb.v" uchar
vips bandjoin_const "$tmp/rgb.v" "$tmp/rgba.v" 128
vips colourspace "$tmp/rgb.v" "$tmp/grey.v" b-w
vips copy "$tmp/rgb.v" "$out/a.jpg[Q=80,strip]"
vips copy "$tmp/rgb.v" "$out/a.png[strip]"
vips copy "$tmp/rgba.v" "$out/alpha.png[strip]"
vips copy "$tmp/rgb.v" "$out/a.webp[Q=50,strip]"
vips copy "$tmp/rgba.v" "$out/alpha.webp[lossless,strip]"
vips copy "$tmp/rgb.v" "$out/a.tif[compression=deflate]"
vips copy "$tmp/grey.v" "$out/grey.jpg[strip]"
vips colourspace "$tmp/rgb.v" "$out/deep.png" rgb16
vips icc_export "$tmp/rgb.v" "$tmp/cmyk.v" --output-profile cmyk
vips copy "$tmp/cmyk.v" "$out/cmyk.jpg[strip]"
vips copy "$tmp/rgb.v" "$tmp/o.jpg"
if command -v heif-enc >/dev/null; then
    heif-enc -q 30 -o "$out/a.heic" "$tmp/o.jpg" >/dev/null 2>&1 || true
    heif-enc -A -q 30 -o "$out/a.avif" "$tmp/o.jpg" >/dev/null 2>&1 || true
fi
touch "$out/.done"
