"""Every program in examples/ runs (as a user would run it, in a fresh interpreter) and shows
what it is meant to show."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def percent(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return float(m.group(1)) / 100


def test_every_example_is_tested():
    tested = {
        "xor.py",
        "loan_approval.py",
        "pytorch_style.py",
        "keras_style.py",
        "overfit_one_batch.py",
        "training_curve.py",
        "distributed_digits.py",  # under mpiexec, in test_distributed.py
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_xor_single_neuron_fails_and_mlp_solves_it():
    out = run("xor.py")
    assert percent(r"single neuron: .*accuracy=(\d+)%", out) <= 0.75
    assert percent(r"two-layer MLP: .*accuracy=(\d+)%", out) == 1.0


def test_loan_approval():
    out = run("loan_approval.py")
    assert percent(r"accuracy=(\d+)%", out) == 1.0
    assert "new applicant" in out


def test_pytorch_style_programs():
    out = run("pytorch_style.py")
    assert "SimpleNet: one epoch done" in out
    assert len(re.findall(r"Epoch +\d+ \| val_acc=\d+% \| lr=", out)) == 4
    assert "lr=5.0e-04" in out  # StepLR halved the rate at epoch 10
    # The labels are a linear rule of two features: the article's model learns it. Over 80
    # seeds the final accuracy on the 40 validation samples averaged 93% in myelin and 93% in
    # PyTorch with the same program (min 82% and 78%); seed 0 gives 85% here.
    assert percent(r"final val_acc=(\d+)%", out) >= 0.8


def test_keras_style_program():
    out = run("keras_style.py")
    assert percent(r"Best val accuracy: (\d+)%", out) >= 0.9
    assert "rows sum to [1.0, 1.0, 1.0]" in out


def test_overfit_one_batch():
    out = run("overfit_one_batch.py")
    assert "OK: the model can memorise one batch" in out
    assert percent(r"accuracy on the batch=(\d+)%", out) == 1.0


@pytest.mark.parametrize("name", ["pytorch_style.py", "keras_style.py"])
def test_the_article_programs_import_only_myelin(name):
    imports = [
        line.split()[1]
        for line in (EXAMPLES / name).read_text().splitlines()
        if line.startswith(("import ", "from "))
    ]
    assert imports and all(m.split(".")[0] in ("myelin", "numpy") for m in imports), imports


def test_training_curve_saves_the_picture(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("training_curve.py", str(tmp_path / "curve.png"))
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = int(re.search(r"lowest val loss [\d.]+ at epoch (\d+)", out).group(1))
    last = re.search(r"last epoch: train loss ([\d.]+), val loss ([\d.]+)", out)
    train, val = float(last.group(1)), float(last.group(2))
    # the picture's point: validation loss bottoms out early and climbs while training loss falls
    assert best < 60 and train < 0.05 and val > 0.3
