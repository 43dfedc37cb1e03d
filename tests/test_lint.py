"""The linters and the type checker pass on the source tree (configured in pyproject.toml).

The tools come from the ``test`` extra, so CI runs them as part of ``python -m pytest``. Each runs
from this interpreter's environment; the tests skip only when the source tree is not beside the
tests (the test suite run against an installed wheel).
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "myelin"
PY_DIRS = ["src", "tests", "benchmarks", "examples"]

pytestmark = pytest.mark.skipif(
    not (SRC / "_kernels.pyx").exists(), reason="needs the source tree (src/myelin)"
)


def _run(args: list[str], tmp_path: Path) -> None:
    # the environment's scripts first on PATH: cython-lint calls pycodestyle by name
    env = dict(os.environ)
    env["PATH"] = sysconfig.get_path("scripts") + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"{' '.join(args[:3])} failed:\n{report}"


def test_ruff_check(tmp_path):
    _run([sys.executable, "-m", "ruff", "check", "--no-cache", *PY_DIRS], tmp_path)


def test_ruff_format(tmp_path):
    _run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *PY_DIRS], tmp_path)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the pinned cython-lint needs Python 3.11")
def test_cython_lint(tmp_path):
    files = sorted(str(p.relative_to(ROOT)) for p in SRC.glob("*.px[di]"))
    assert files, "no .pyx/.pxd files found"
    exe = Path(sysconfig.get_path("scripts")) / "cython-lint"
    assert exe.exists(), "cython-lint is not installed: pip install '.[test]'"
    _run([str(exe), *files], tmp_path)


def test_mypy(tmp_path):
    # the stub of the compiled module and the py.typed marker are what mypy and users see
    assert (SRC / "_kernels.pyi").exists() and (SRC / "py.typed").exists()
    _run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")], tmp_path)
