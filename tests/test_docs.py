"""The documentation: the API reference builds without warnings, and the snippets of the page
"From the article to myelin" run as written (in order, in one namespace, in a scratch dir)."""

import importlib.metadata
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
