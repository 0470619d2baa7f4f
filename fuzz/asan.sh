#!/usr/bin/env bash
# Build fastwsgi with FASTWSGI_DEBUG=1 (AddressSanitizer + UBSan, Cython bounds
# checks on) in a copy of the tree, then run the parser-level suites under it
# (the corpus, the fuzz regressions and the smuggling matrix), then the server
# suites (the writer's among them), whose servers run sanitized too, then the
# application-side fuzzer (fuzz/app_fuzz.py) against sanitized servers, inline
# and with --threads 4.
#
#   bash fuzz/asan.sh [WORKDIR]      # default WORKDIR: /tmp/fw-asan
#   REUSE=1 bash fuzz/asan.sh        # keep an earlier sanitizer build of WORKDIR
#   APP_FUZZ_CASES=5000 bash fuzz/asan.sh   # cases per app fuzzer run (default 1000)
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
    cp "$ROOT/fuzz/app_fuzz.py" "$WORK/fuzz/app_fuzz.py"
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
[ "$status" = 0 ] || exit "$status"

# The servers the tests start inherit the preload and options; their reports go
# to files (log_path), since their stderr belongs to the test fixtures.
SERVER_LOG="$WORK/asan-server-tests.log"
rm -f "$WORK"/asan-server.*
export ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$WORK/asan-server"
export UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$WORK/asan-server"
echo "== running the server suites against sanitized servers"
set +e
"$PY" -m pytest -q -p no:cacheprovider \
    tests/test_server_http.py tests/test_server_app.py tests/test_server_limits.py \
    tests/test_proxy.py tests/test_misbehaving_apps.py tests/test_smuggling.py \
    tests/test_writer.py tests/test_fuzz_app.py \
    tests/test_connection.py tests/test_lifecycle.py tests/test_body_cache.py \
    tests/test_static.py \
    2>&1 | tee "$SERVER_LOG"
status=${PIPESTATUS[0]}
set -e
if ls "$WORK"/asan-server.* > /dev/null 2>&1 || \
        grep -qE "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$SERVER_LOG"; then
    echo "== sanitizer report found: $(ls "$WORK"/asan-server.* 2>/dev/null) $SERVER_LOG"
    exit 1
fi
echo "== pytest exit status $status; no sanitizer report from the servers"
[ "$status" = 0 ] || exit "$status"

# The application side: random start_response arguments and iterables against a
# sanitized server (the fuzzer's own checks, plus any report the server wrote).
APP_LOG="$WORK/asan-app-fuzz.log"
echo "== app fuzzer: ${APP_FUZZ_CASES:-1000} cases inline, then with --threads 4"
set +e
for threads in 1 4; do
    FUZZ_OUT="$WORK/app-fuzz-out" "$PY" fuzz/app_fuzz.py --random "${APP_FUZZ_CASES:-1000}" \
        --seed "$threads" --threads "$threads" 2>&1 | tee -a "$APP_LOG"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
set -e
if ls "$WORK"/asan-server.* > /dev/null 2>&1 || \
        grep -qE "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$APP_LOG"; then
    echo "== sanitizer report found: $(ls "$WORK"/asan-server.* 2>/dev/null) $APP_LOG"
    exit 1
fi
echo "== app fuzzer exit status $status; no sanitizer report"
exit "$status"
