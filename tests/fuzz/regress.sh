#!/usr/bin/env bash
# tests/fuzz/regress.sh - replay every input in tests/fuzz/regressions/<target>/
# (inputs that once crashed a target, kept after the fix) and the seed corpus
# tests/fuzz/corpus/<target>/ through its libFuzzer binary once each (no
# fuzzing). Exit non-zero when any input crashes. Builds the targets first.
set -uo pipefail
cd "$(dirname "$0")/../.."
# one known library leak is suppressed (tests/fuzz/lsan.supp says which and why)
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

TARGETS=${FUZZ_TARGETS:-generate url kie_answer sigv4 multipart image http}
# shellcheck disable=SC2086
bash tests/fuzz/build.sh $TARGETS || { echo "regress: build failed" >&2; exit 1; }

failed=0
for t in $TARGETS; do
    files=()
    seeds="tests/fuzz/corpus/$t"
    if [ "$t" = image ]; then
        bash tests/fuzz/seed_image.sh build/fuzz/seeds/image || failed=1
        seeds=build/fuzz/seeds/image
    fi
    for d in "tests/fuzz/regressions/$t" "$seeds"; do
        [ -d "$d" ] || continue
        while IFS= read -r f; do files+=("$f"); done < <(find "$d" -type f | sort)
    done
    if [ ${#files[@]} -eq 0 ]; then
        echo "regress: $t: no inputs"
        continue
    fi
    log=$(mktemp)
    tmp=$(mktemp -d)
    # each file is run once; libFuzzer stops and fails at the first crash.
    # TMPDIR: fuzz_multipart's UPLOAD_DIRs, removed below even after a crash
    if TMPDIR="$tmp" "build/fuzz/fuzz_$t" -timeout=30 "${files[@]}" >"$log" 2>&1; then
        echo "regress: $t: ok (${#files[@]} inputs)"
    else
        echo "regress: $t: FAIL"
        grep -aE "^Running:|fuzz check failed|runtime error|==ERROR|SUMMARY" "$log" | tail -n 6
        failed=1
    fi
    rm -rf "$log" "$tmp"
done
exit $failed
