#!/usr/bin/env bash
# tests/fuzz/build.sh [TARGET...] - build libFuzzer targets into build/fuzz/.
#
# Sources are compiled once into build/fuzz/obj/ (instrumented for coverage,
# ASan and UBSan with -fno-sanitize-recover so UB is a crash), then each
# target links only the modules it needs. Needs clang and libclang-rt-14-dev.
set -euo pipefail
cd "$(dirname "$0")/../.."

CC=${FUZZ_CC:-clang}
OUT=build/fuzz
OBJ=$OUT/obj
PKGS="libmicrohttpd libcurl libcjson vips sqlite3"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
WARN="-Wall -Wextra -Werror -Wshadow -Wconversion -Wno-sign-conversion"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -DPPA_HAVE_S3 -Iinclude -Ibuild/gen $(pkg-config --cflags $PKGS | sed 's/-I/-isystem /g')"
LIBS="$(pkg-config --libs $PKGS) -luuid -lcrypto -lz -lpthread -lm"
ALL_TARGETS="generate url kie_answer sigv4 multipart image http"

# Modules (src/<name>.c) each target links; "LIB" = every module but main.c.
modules_of() {
    case "$1" in
    generate) echo "generate validate kie" ;;
    url) echo "validate" ;;
    kie_answer) echo "kie" ;;
    sigv4) echo "sigv4 sigv4_canon hex" ;;
    image) echo "image validate log spool" ;;
    multipart | http) for f in src/*.c; do b=$(basename "$f" .c); [ "$b" = main ] || echo "$b"; done; echo web_assets ;;
    *) echo "unknown fuzz target: $1" >&2; return 1 ;;
    esac
}

newest_header() { ls -t include/*.h | head -n 1; }

compile() { # compile() NAME SOURCE
    local o=$OBJ/$1.o
    if [ ! -f "$o" ] || [ "$2" -nt "$o" ] || [ "$(newest_header)" -nt "$o" ]; then
        echo "  CC      $2"
        $CC $CFLAGS $WARN $SAN -fsanitize=fuzzer-no-link -c -o "$o" "$2"
    fi
}

mkdir -p "$OBJ"
targets=${*:-$ALL_TARGETS}
for t in $targets; do
    mods=$(modules_of "$t")
    objs=""
    for m in $mods; do
        if [ "$m" = web_assets ]; then
            make -s build/gen/web_assets.c >/dev/null
            compile web_assets build/gen/web_assets.c
        else
            compile "$m" "src/$m.c"
        fi
        objs="$objs $OBJ/$m.o"
    done
    echo "  LD      $OUT/fuzz_$t"
    # the target itself: stricter warnings (sign conversions too)
    $CC $CFLAGS $WARN -Wsign-conversion $SAN -fsanitize=fuzzer -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" $objs $LIBS
done
