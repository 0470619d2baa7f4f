#!/usr/bin/env bash
# Build fastwsgi with FASTWSGI_DEBUG=1 (AddressSanitizer + UBSan, Cython bounds
# checks on) in a copy of the tree, then run the parser-level suites under it:
# the corpus, the fuzz regressions and the smuggling matrix.
#
#   bash fuzz/asan.sh [WORKDIR]      # default WORKDIR: /tmp/fw-asan
#   REUSE=1 bash fuzz/asan.sh        # keep an earlier sanitizer build of WORKDIR
#
# The copy keeps the normal in-place build of the repository untouched.  The
# python binary is not built with ASan, so the runtime is preloaded; leak
# detection is off because CPython keeps memory until exit on purpose.  Any
# ASan or UBSan report fails the run (halt_on_error, and the log is checked).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/fw-asan}"
PY="${PYTHON:-python3}"

if [ "${REUSE:-0}" = 1 ] && [ -d "$WORK/fastwsgi" ]; then
    # REUSE=1: keep the sanitizer build, refresh tests and fuzz regressions only
    rm -rf "$WORK/tests" "$WORK/fuzz/regressions"
    cp -r "$ROOT/tests" "$WORK/tests"
    mkdir -p "$WORK/fuzz" && cp -r "$ROOT/fuzz/regressions" "$WORK/fuzz/regressions"
    cd "$WORK"
else
    rm -rf "$WORK"
    mkdir -p "$WORK"
    # the sources only: no build products, no fuzzing work files
    tar -C "$ROOT" --exclude=./build --exclude='./fastwsgi/*.so' --exclude='./fastwsgi/*.c' \
        --exclude=./fuzz/out --exclude=./fuzz/work --exclude=.git -cf - . | tar -C "$WORK" -xf -
    cd "$WORK"
    echo "== building with FASTWSGI_DEBUG=1 in $WORK"
    FASTWSGI_DEBUG=1 "$PY" setup.py build_ext --inplace > "$WORK/build.log" 2>&1 || {
        tail -30 "$WORK/build.log"; exit 1; }
fi
if ! nm -D fastwsgi/_parser*.so | grep __asan_report > /dev/null; then
    echo "the parser is not instrumented"; exit 1
fi

export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$WORK"
export PYTHONMALLOC=malloc   # let ASan see every Python allocation too

LOG="$WORK/asan-tests.log"
echo "== running the corpus, fuzz regressions and smuggling matrix (parser level)"
set +e
"$PY" -m pytest -q -p no:cacheprovider \
    tests/test_corpus.py tests/test_fuzz_regressions.py tests/test_parser.py \
    "tests/test_smuggling.py" -k "not server" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
if grep -qE "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$LOG"; then
    echo "== sanitizer report found (see $LOG)"
    exit 1
fi
echo "== pytest exit status $status; no sanitizer report"
exit "$status"
