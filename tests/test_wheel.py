"""The myelin under test is the installed, repaired wheel, not the source tree.

CI (``CI=true``, as ``.ci/run`` runs) installs the manylinux wheel that ``tools/install_wheel.sh``
builds and runs the tests against it, so there these checks must hold. A developer's editable
install (CONTRIBUTING.md) imports from ``src/`` by design: there the checks are skipped, with the
reason shown by ``-ra``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import myelin
from myelin import _config

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _distribution() -> metadata.Distribution | None:
    try:
        return metadata.distribution("myelin")
    except metadata.PackageNotFoundError:
        return None


def _is_editable(dist: metadata.Distribution) -> bool:
    direct_url = dist.read_text("direct_url.json")
    if not direct_url:
        return False
    return bool(json.loads(direct_url).get("dir_info", {}).get("editable", False))


def _installed_wheel() -> metadata.Distribution:
    """The installed (non-editable) myelin distribution; in CI its absence is a failure."""
    dist = _distribution()
    if dist is None or _is_editable(dist):
        how = "not installed by pip" if dist is None else "an editable install"
        if IN_CI:
            pytest.fail(f"CI must test the installed wheel, but myelin is {how}")
        pytest.skip(f"myelin is {how} (a developer setup): it imports from the source tree")
    return dist


def test_myelin_is_imported_from_site_packages_not_src():
    dist = _installed_wheel()
    imported = Path(myelin.__file__).resolve().parent
    assert ROOT / "src" not in imported.parents and imported != ROOT / "src" / "myelin", (
        f"myelin was imported from the source tree ({imported}), not the installed wheel"
    )
    assert imported == Path(dist.locate_file("myelin")).resolve()
    assert dist.version == myelin.__version__


def test_hot_path_modules_are_the_compiled_ones():
    """The wheel holds the modules CMakeLists.txt compiles with Cython beside their sources,
    and Python imports the compiled ones; myelin._warn, which reads the stack, stays Python."""
    import importlib

    _installed_wheel()
    for name in ("_autograd", "tensor", "ops", "nn.functional", "nn.layers", "nn.module",
                 "nn.loss", "optim.optimizer", "optim.adam"):  # fmt: skip
        module = importlib.import_module("myelin." + name)
        assert module.__file__.endswith(".so"), module.__file__
        assert Path(module.__file__).with_name(name.split(".")[-1] + ".py").is_file()
    assert importlib.import_module("myelin._warn").__file__.endswith(".py")
    assert myelin._config.python_core() == "compiled (Cython)"


def test_installed_wheel_is_manylinux_with_openmp_vendored():
    dist = _installed_wheel()
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    assert tags and all("manylinux" in tag for tag in tags), tags
    vendored = [str(f) for f in dist.files or [] if str(f).startswith("myelin.libs/libgomp")]
    assert len(vendored) == 1, f"expected one vendored libgomp in myelin.libs/, got {vendored}"
    assert _config.has_openmp()
    # the extension asks for the vendored copy by its hashed name, and that copy is what is loaded
    # (torch, if imported, brings its own libgomp under another name: both may be mapped)
    vendored_path = Path(dist.locate_file(vendored[0])).resolve()
    kernels = Path(myelin._kernels.__file__).read_bytes()
    assert vendored_path.name.encode() in kernels
    with open("/proc/self/maps") as maps:
        loaded = {str(Path(line.split()[-1]).resolve()) for line in maps if "libgomp" in line}
    assert str(vendored_path) in loaded, loaded


def test_show_config_names_the_vendored_openmp_even_beside_torch():
    dist = _installed_wheel()
    (vendored,) = [Path(str(f)).name for f in dist.files or [] if "myelin.libs/libgomp" in str(f)]
    # PyTorch and scikit-learn map their own OpenMP runtimes (before or after myelin's in
    # /proc/self/maps, by import order); show_config() must still name myelin's
    code = (
        "import importlib, importlib.util, sys\n"
        "if sys.argv[1] == 'after': import myelin\n"
        "for name in ('torch', 'sklearn.ensemble'):\n"
        "    if importlib.util.find_spec(name.split('.')[0]): importlib.import_module(name)\n"
        "import myelin; myelin.show_config()\n"
    )
    for order in ("before", "after"):
        r = subprocess.run(
            [sys.executable, "-c", code, order], capture_output=True, text=True, cwd=ROOT / "tests"
        )
        assert r.returncode == 0, r.stderr
        assert f"({vendored})" in r.stdout, (order, r.stdout)
