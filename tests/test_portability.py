"""Portability is proven, not assumed.

- The portable code of the extension (everything not compiled from a ``*_avx2.c`` or ``*_avx512.c``
  file, the baseline path among it) contains no AVX instruction: disassembled from the built
  extension that is under test, function by function, with binutils.
- The test suite passes with the path forced by ``MYELIN_CPU`` to ``baseline`` and to ``avx2``.
- On an emulated CPU without AVX (qemu-user, ``-cpu Nehalem``) myelin imports and trains.
- A build with OpenMP switched off builds, says so in ``show_config()`` and passes the kernel tests.

Tools: binutils (``readelf``, ``objdump``) come with the C compiler that builds myelin; qemu-user is
installed by ``tools/install_wheel.sh`` in CI. Outside CI a missing tool skips its test with the
reason; in CI (``CI=true``) it fails.
"""

from __future__ import annotations

import bisect
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from myelin import _config, _kernels

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
WIDE_SOURCE = re.compile(r"_avx(2|512)\.c$")
WIDE_NAME = re.compile(r"_avx(2|512)(_|$)")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- no AVX in the portable objects


def _functions(so: str) -> list[tuple[int, int, str, str | None]]:
    """(start, end, name, source file or None for a global) of every function in ``.symtab``."""
    out = _run([_tool("readelf"), "-sW", so], check=True).stdout
    funcs, table, source = [], None, None
    for line in out.splitlines():
        if line.startswith("Symbol table"):
            table = "symtab" if "'.symtab'" in line else "dynsym"
            continue
        fields = line.split()
        if table != "symtab" or len(fields) < 8 or not fields[0].endswith(":"):
            continue
        _, value, size, kind, bind, _, ndx, name = fields[:8]
        if kind == "FILE":
            source = name  # the local symbols after a FILE symbol come from that object
        elif kind == "FUNC" and ndx != "UND" and int(size) > 0:
            start = int(value, 16)
            funcs.append((start, start + int(size), name, source if bind == "LOCAL" else None))
    funcs.sort()
    return funcs


def _is_wide(func: tuple[int, int, str, str | None]) -> bool:
    """Whether the function comes from an AVX2/AVX-512 object (by file, or by name if global)."""
    _, _, name, source = func
    return bool(WIDE_SOURCE.search(source)) if source else bool(WIDE_NAME.search(name))


def _avx_use(so: str, funcs) -> dict[tuple[int, int, str, str | None], int]:
    """Count, per function, the instructions that need AVX: VEX/EVEX-encoded (``v...``) or
    touching a ymm/zmm or mask register."""
    out = _run(
        [_tool("objdump"), "-d", "-w", "--no-show-raw-insn", "-j", ".text", so], check=True
    ).stdout
    insn = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
    wide_operand = re.compile(r"%(ymm|zmm)\d+|%k[0-7]\b")
    starts = [f[0] for f in funcs]
    counts: dict = {}
    for line in out.splitlines():
        m = insn.match(line)
        if m is None:
            continue
        addr, mnemonic, operands = int(m.group(1), 16), m.group(2), m.group(3)
        avx = mnemonic.startswith("v") and mnemonic not in ("verr", "verw")
        if not (avx or wide_operand.search(operands)):
            continue
        i = bisect.bisect_right(starts, addr) - 1
        func = funcs[i] if i >= 0 and addr < funcs[i][1] else (addr, addr, "?", None)
        counts[func] = counts.get(func, 0) + 1
    return counts


def _table_targets(so: str, table: str, funcs) -> list:
    """The functions a dispatch table (an exported struct of function pointers) points to: the
    R_X86_64_RELATIVE relocations inside the table's bytes carry the addresses."""
    syms = _run([_tool("readelf"), "-sW", "--dyn-syms", so], check=True).stdout
    rows = [line.split() for line in syms.splitlines() if line.endswith(f" {table}")]
    assert rows, f"{table} is not exported by {so}"
    lo = int(rows[0][1], 16)
    hi = lo + int(rows[0][2])
    relocs = _run([_tool("readelf"), "-rW", so], check=True).stdout
    starts = {f[0]: f for f in funcs}
    targets = []
    for line in relocs.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "R_X86_64_RELATIVE" and lo <= int(fields[0], 16) < hi:
            target = int(fields[-1], 16)
            if target in starts:  # the name strings of the tables point into .rodata
                targets.append(starts[target])
    return targets


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF binaries only")
def test_portable_objects_use_no_avx():
    so = _kernels.__file__
    funcs = _functions(so)
    assert funcs, f"{so} has no symbol table (stripped?): pyproject.toml sets install.strip=false"
    sources = {f[3] for f in funcs}
    assert {"ukernel_baseline.c", "eltwise_baseline.c", "gemm.c", "ops.c"} <= sources, sources

    counts = _avx_use(so, funcs)
    portable_with_avx = {
        f"{f[3] or 'global'}:{f[2]}": n for f, n in counts.items() if not _is_wide(f)
    }
    assert portable_with_avx == {}, f"AVX instructions outside the AVX objects: {portable_with_avx}"

    # the detector works: the wide objects are found, and they do use ymm/zmm
    wide_sources = {f[3] for f in counts if f[3]}
    assert {"ukernel_avx2.c", "ukernel_avx512.c", "eltwise_avx2.c"} <= wide_sources, wide_sources

    # and the baseline dispatch tables point only at AVX-free functions of the baseline objects
    for table in ("myelin_sgemm_baseline", "myelin_dgemm_baseline", "myelin_ops_baseline"):
        targets = _table_targets(so, table, funcs)
        assert targets, f"no function pointers found in {table}"
        assert all(counts.get(f, 0) == 0 and not _is_wide(f) for f in targets), targets
        assert {f[3] for f in targets} <= {"ukernel_baseline.c", "eltwise_baseline.c"}, targets
    avx2_targets = _table_targets(so, "myelin_sgemm_avx2", funcs)
    assert avx2_targets and all(counts.get(f, 0) > 0 for f in avx2_targets)


# ---------------------------------------------------------------- the suite on each forced path

# Tests that take the `isa` fixture (tests/conftest.py) already run on every path in the default
# run; on a forced path they would repeat exactly, so they are deselected there: what changes is
# every other test, which runs on the forced path instead of the widest one.
_FORCED_PATH_PLUGIN = """
import os
import pytest
from myelin import _config

def pytest_sessionstart(session):
    assert _config.current_isa() == os.environ["MYELIN_CPU"], _config.current_isa()

def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        own = item.nodeid.startswith("tests/test_portability.py")
        (drop if own or "isa" in getattr(item, "fixturenames", ()) else keep).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
"""


@pytest.mark.slow
@pytest.mark.parametrize("path", ["baseline", "avx2"])
def test_suite_passes_on_forced_path(path, tmp_path):
    if path not in _config.available_isas():
        pytest.skip(f"this CPU has no {path} path (it has {_config.available_isas()})")
    (tmp_path / "forced_path_plugin.py").write_text(_FORCED_PATH_PLUGIN)
    env = dict(os.environ, MYELIN_CPU=path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    r = _run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "forced_path_plugin",
         "-p", "no:cacheprovider", "tests"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
    assert r.returncode == 0, tail
    assert re.search(r"\d+ passed", tail) and " failed" not in tail, tail


# ---------------------------------------------------------------- a CPU without AVX, emulated

_SMOKE = """
import numpy as np
import myelin
import myelin.nn as nn
from myelin import _config

assert _config.available_isas() == ["baseline"], _config.available_isas()
myelin.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
opt = myelin.optim.Adam(model.parameters(), lr=1e-2)
x, y = myelin.randn(32, 8), myelin.randint(0, 3, (32,))
losses = []
for _ in range(3):
    opt.zero_grad()
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    opt.step()
    losses.append(loss.item())
assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
a = np.random.default_rng(0).standard_normal((67, 45)).astype(np.float32)
expected = a.astype(np.float64) @ a.T.astype(np.float64)
np.testing.assert_allclose(myelin.ops.matmul(a, a.T), expected, rtol=1e-4, atol=1e-4)
print("trained on", _config.current_isa(), losses)
"""


def test_trains_on_an_old_cpu_under_qemu():
    qemu = _tool("qemu-x86_64")
    cmd = [qemu, "-cpu", "Nehalem", sys.executable]
    env = {k: v for k, v in os.environ.items() if k != "MYELIN_CPU"}
    r = _run([*cmd, "-c", _SMOKE], cwd=ROOT / "tests", env=env, timeout=300)
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "trained on baseline" in r.stdout

    # forcing a path the emulated CPU lacks is a clear error at import, not an illegal instruction
    env["MYELIN_CPU"] = "avx2"
    r = _run([*cmd, "-c", "import myelin"], cwd=ROOT / "tests", env=env, timeout=300)
    assert r.returncode == 1, f"rc={r.returncode}\n{r.stderr}"
    assert "MYELIN_CPU='avx2': this CPU cannot run that path" in r.stderr


# ---------------------------------------------------------------- the build without OpenMP

# The build without OpenMP also leaves the hot-path modules as plain Python
# (MYELIN_COMPILE_PY=OFF), so that their source runs the framework's tests too.
_KERNEL_TESTS = ["tests/test_matmul.py", "tests/test_activations.py", "tests/test_softmax.py"]
_PLAIN_PYTHON_TESTS = [
    "tests/test_autograd.py",
    "tests/test_fast_paths.py",
    "tests/test_nn.py",
    "tests/test_optim.py",
    "tests/test_training.py",
]


@pytest.mark.slow
def test_no_openmp_build(tmp_path):
    pytest.importorskip("scikit_build_core", reason="the build extra (pyproject.toml) is needed")
    r = _run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-build-isolation", "--no-deps",
         "--quiet", "-w", str(tmp_path / "dist"), f"-Cbuild-dir={tmp_path / 'build'}",
         "-Ccmake.define.MYELIN_OPENMP=OFF", "-Ccmake.define.MYELIN_COMPILE_PY=OFF"],
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("myelin-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    # `python -S`: no .pth files, so a developer's editable install (an import hook) cannot shadow
    # the build under test; the rest of this interpreter's path (numpy, pytest) comes after it
    src = ROOT / "src"
    others = [p for p in sys.path if p and Path(p).is_dir() and src not in Path(p, "x").parents]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *others]))
    env.pop("MYELIN_CPU", None)

    code = (
        "import myelin, myelin._autograd; print(myelin.__file__); "
        "print(myelin._autograd.__file__); myelin.show_config()"
    )
    r = _run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == str(site / "myelin" / "__init__.py"), r.stdout
    assert r.stdout.splitlines()[1] == str(site / "myelin" / "_autograd.py"), r.stdout
    assert "openmp:        none (serial build)" in r.stdout, r.stdout
    assert "python core:   plain Python" in r.stdout, r.stdout

    r = _run(
        [sys.executable, "-S", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         *_KERNEL_TESTS, *_PLAIN_PYTHON_TESTS],
        cwd=ROOT, env=env,
    )  # fmt: skip
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
    assert r.returncode == 0, tail
    assert re.search(r"\d+ passed", tail) and " failed" not in tail, tail
