#!/usr/bin/env bash
# Build a copy of the parser with libFuzzer coverage instrumentation (clang's
# -fsanitize-coverage) for fuzz/differential.py: FUZZ_ROOT=<dir> then uses it.
#
#   bash fuzz/build_coverage.sh [DIR]     # default DIR: /tmp/fw-fuzz
#
# Not -fsanitize=fuzzer-no-link: it adds stack-depth tracing whose symbol
# (__sancov_lowest_stack) atheris' libFuzzer core does not export.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-/tmp/fw-fuzz}"
rm -rf "$DIR" && mkdir -p "$DIR/fastwsgi"
# the pure-Python package (fastwsgi/__init__ imports some of it) and the parser source
cp "$ROOT"/fastwsgi/*.py "$ROOT"/fastwsgi/_parser.{pyx,pxd,pyi} "$DIR/fastwsgi/"
cat > "$DIR/setup_fuzz.py" <<'PY'
from Cython.Build import cythonize
from setuptools import Extension, setup
directives = {"language_level": "3", "boundscheck": False, "wraparound": False,
              "cdivision": True, "initializedcheck": False}
flags = ["-O1", "-g", "-fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp"]
setup(ext_modules=cythonize([Extension("fastwsgi._parser", ["fastwsgi/_parser.pyx"],
                                       extra_compile_args=flags)], compiler_directives=directives))
PY
cd "$DIR" && CC=clang LDSHARED="clang -shared" python3 setup_fuzz.py build_ext --inplace > build.log 2>&1 \
    || { tail -20 build.log; exit 1; }
echo "instrumented parser: $(ls "$DIR"/fastwsgi/_parser*.so)"
