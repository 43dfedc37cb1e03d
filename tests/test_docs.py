"""The documentation: the API reference builds without warnings, and the snippets of the page
"From the article to myelin" run as written (in order, in one namespace, in a scratch dir)."""

import importlib
import importlib.metadata
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ARTICLE = DOCS / "article.md"

pytestmark = pytest.mark.skipif(not (DOCS / "conf.py").exists(), reason="needs the docs/ tree")

# the article's concepts, each a section of the page
CONCEPTS = [
    "neuron",
    "xor",
    "activations",
    "training loop",
    "losses",
    "optimizers",
    "schedulers",
    "dropout",
    "early stopping",
    "saving",
]


def test_article_page_covers_the_concepts():
    headings = [h.lower() for h in re.findall(r"^## (.+)$", ARTICLE.read_text(), flags=re.M)]
    for concept in CONCEPTS:
        assert any(concept in h for h in headings), f"no section on {concept!r}: {headings}"


def test_article_snippets_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", ARTICLE.read_text(), flags=re.S)
    assert len(blocks) >= len(CONCEPTS)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/article.md python block {i + 1}", "exec"), namespace)
    assert "Best val accuracy:" in capsys.readouterr().out


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the pinned Sphinx needs Python 3.11")
def test_sphinx_build_has_no_warnings(tmp_path):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "html" / "article.html").exists()
    assert (tmp_path / "html" / "api" / "nn.html").exists()


def test_version_from_one_place():
    import myelin

    # the build reads the version from src/myelin/__init__.py; the changelog has an entry for it
    assert importlib.metadata.version("myelin") == myelin.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{myelin.__version__}]" in changelog


PUBLIC_MODULES = [
    "myelin",
    "myelin.nn",
    "myelin.nn.functional",
    "myelin.nn.init",
    "myelin.nn.utils",
    "myelin.optim",
    "myelin.optim.lr_scheduler",
    "myelin.data",
    "myelin.callbacks",
    "myelin.training",
    "myelin.serialization",
    "myelin.keras",
    "myelin.keras.layers",
    "myelin.keras.models",
    "myelin.keras.optimizers",
    "myelin.keras.utils",
    "myelin.ops",
    "myelin.sklearn",
    "myelin.distributed",
]


def _undocumented(obj) -> list[str]:
    """Public methods and properties of class ``obj`` without a docstring (own or inherited)."""
    missing = []
    for name, attr in vars(obj).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property):
            documented = inspect.getdoc(attr) or any(
                inspect.getdoc(vars(base).get(name)) for base in obj.__mro__[1:]
            )
        elif inspect.isfunction(attr):
            documented = inspect.getdoc(getattr(obj, name))
        else:
            continue
        if not documented:
            missing.append(f"{obj.__qualname__}.{name}")
    return missing


def test_every_public_name_has_a_docstring():
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        if not inspect.getdoc(module):
            missing.append(module_name)
        for name in module.__all__ if hasattr(module, "__all__") else dir(module):
            obj = getattr(module, name)
            if name.startswith("_") or inspect.ismodule(obj):
                continue
            if inspect.isclass(obj):
                missing += [f"{module_name}.{m}" for m in _undocumented(obj)]
            if (inspect.isclass(obj) or callable(obj)) and not inspect.getdoc(obj):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without a docstring: {sorted(set(missing))}"
