#!/usr/bin/env bash
# Builds the kernels with AddressSanitizer and UndefinedBehaviorSanitizer (CMake option
# MYELIN_SANITIZE) into a temporary directory and runs the kernel tests against that build, with
# the sanitizer runtime preloaded into the (uninstrumented) Python. Any report fails the run.
#
#   tools/sanitize.sh                 the kernel tests
#   tools/sanitize.sh tests/test_x.py -k y   any pytest arguments instead
#   MYELIN_SANITIZE_LEAKS=1 tools/sanitize.sh   also LeakSanitizer at exit: fails on a leak whose
#                                     allocation stack passes through myelin's code (Python's
#                                     own leaks at exit are listed in the log and ignored)
#
# Needs gcc (or clang) with the sanitizer runtimes, cmake, cython, and the test requirements in
# the current Python environment. The installed myelin is left alone.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"
cc="${CC:-gcc}"
work="$(mktemp -d "${TMPDIR:-/tmp}/myelin-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "== building the sanitizer build in $work"
cmake -S "$repo" -B "$work/build" -DMYELIN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="$cc" -DPython_EXECUTABLE="$(command -v "$python")" > "$work/cmake.log"
cmake --build "$work/build" -j "$(nproc 2>/dev/null || echo 2)" > "$work/build.log" \
    || { cat "$work/build.log"; exit 1; }

# the Python package beside the sanitized extension
mkdir -p "$work/stage"
cp -r "$repo/src/myelin" "$work/stage/"
find "$work/stage/myelin" -name '_kernels*.so' -delete
cp "$work/build"/_kernels*.so "$work/stage/myelin/"

libasan="$("$cc" -print-file-name=libasan.so)"
libubsan="$("$cc" -print-file-name=libubsan.so)"
[ -f "$libasan" ] || { echo "no libasan.so from $cc"; exit 1; }

leaks=0
[ "${MYELIN_SANITIZE_LEAKS:-0}" = 1 ] && leaks=1
if [ $# -eq 0 ]; then
    set -- tests/test_matmul.py tests/test_activations.py tests/test_softmax.py \
        tests/test_losses.py tests/test_reductions.py tests/test_optimizers.py \
        tests/test_fast_paths.py tests/test_dispatch.py tests/test_threads.py \
        tests/test_denormal.py
fi

echo "== running pytest $* under ASan+UBSan (leaks: $leaks)"
cd "$repo"
export LD_PRELOAD="$libasan${libubsan:+:$libubsan}"
export ASAN_OPTIONS="detect_leaks=$leaks:abort_on_error=1:halt_on_error=1:detect_odr_violation=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="exitcode=0:log_path=$work/lsan"
export PYTHONPATH="$work/stage${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONMALLOC=malloc
"$python" - "$work/stage" "$@" <<'PY'
import sys

stage, args = sys.argv[1], sys.argv[2:]
# an editable install redirects `import myelin` to its source tree: drop that finder
sys.meta_path[:] = [f for f in sys.meta_path if "Redirecting" not in type(f).__name__]
import myelin  # noqa: E402

if not myelin._kernels.__file__.startswith(stage):
    sys.exit(f"imported {myelin._kernels.__file__}, not the sanitizer build")
print("sanitizer build:", myelin._kernels.__file__, flush=True)
import pytest  # noqa: E402

sys.exit(pytest.main(["-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider", *args]))
PY
if [ "$leaks" = 1 ]; then
    unset LD_PRELOAD
    "$python" - "$work" <<'PY'
import glob, re, sys

blocks = []
for path in glob.glob(sys.argv[1] + "/lsan*"):
    blocks += re.split(r"\n(?=(?:Direct|Indirect) leak)", open(path).read())
leaks = [b for b in blocks if b.startswith(("Direct", "Indirect"))]
ours = [b for b in leaks if re.search(r"_kernels|myelin_|csrc/", b)]
print(f"LeakSanitizer: {len(leaks)} leak records at exit, {len(ours)} from myelin's code")
for b in ours[:10]:
    print(b)
sys.exit(1 if ours else 0)
PY
fi
echo "== no sanitizer report"
