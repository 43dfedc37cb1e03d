"""The targets of issue 4, as the issue writes them, and the checks that measure each one."""

from __future__ import annotations

from dataclasses import dataclass

# The issue's table "Targets, as ratios measured side by side in one run", row by row, verbatim.
ISSUE_TARGETS = (
    ("square GEMM 1024-2048", ">= 1.0x NumPy/OpenBLAS, >= 85% of measured peak"),
    ("square GEMM 64-256", ">= 1.3x NumPy"),
    ("MLP-layer GEMMs, every transpose", ">= 1.1x NumPy"),
    ("batched 1000×32×32", ">= 1.5x NumPy"),
    ("softmax cross-entropy fwd+bwd 4096×1000", ">= 5x the NumPy reference, >= 3x PyTorch"),
    ("ReLU 16M", ">= 0.9x a same-size memory copy"),
    ("Adam step, 6M params", ">= 5x the NumPy reference"),
    ("train step 10-64-32-2 b16", ">= 4x the NumPy reference, >= 15x PyTorch"),
    ("train step 784-512-256-10 b128", ">= 1.4x NumPy reference, >= 1.5x PyTorch"),
    ("train step 1024-2048-2048-10 b256", ">= 1.6x NumPy reference, >= 1.3x PyTorch"),
    (
        "digits fit, 30 epochs",
        ">= 3x sklearn MLPClassifier, >= 10x PyTorch's DataLoader loop, same accuracy (>= 0.95)",
    ),
)

# Targets the issue states in its text rather than in the table.
TEXT_TARGETS = (
    ("square GEMM 1024 float64", ">= 0.9x NumPy"),
    # issue 5: thread count follows the work
    ("train step 784-64-10 b32, threads", ">= 1.0x the same step on 1 thread"),
)

# What each "against" compares: the time of that system over myelin's ("numpy", "torch",
# "sklearn", "copy"), myelin's share of the measured FMA peak ("peak"), or myelin's test accuracy.
AGAINST_LABELS = {
    "numpy": "np",
    "torch": "pt",
    "sklearn": "sk",
    "copy": "copy",
    "1 thread": "1t",
    "peak": "peak",
    "accuracy": "acc",
}


@dataclass(frozen=True)
class Check:
    """A lower bound on one measured figure of a row."""

    against: str
    minimum: float

    def describe(self) -> str:
        label = AGAINST_LABELS[self.against]
        if self.against == "peak":
            return f"{label}>={self.minimum:.0%}"
        if self.against == "accuracy":
            return f"{label}>={self.minimum:g}"
        return f"{label}>={self.minimum:g}x"

    def format_value(self, value: float) -> str:
        label = AGAINST_LABELS[self.against]
        if self.against == "peak":
            return f"{label} {value:.0%}"
        if self.against == "accuracy":
            return f"{label} {value:.3f}"
        return f"{label} {value:.2f}x"


CHECKS = {
    "square GEMM 1024-2048": (Check("numpy", 1.0), Check("peak", 0.85)),
    "square GEMM 64-256": (Check("numpy", 1.3),),
    "square GEMM 1024 float64": (Check("numpy", 0.9),),
    "train step 784-64-10 b32, threads": (Check("1 thread", 1.0),),
    "MLP-layer GEMMs, every transpose": (Check("numpy", 1.1),),
    "batched 1000×32×32": (Check("numpy", 1.5),),
    "softmax cross-entropy fwd+bwd 4096×1000": (Check("numpy", 5.0), Check("torch", 3.0)),
    "ReLU 16M": (Check("copy", 0.9),),
    "Adam step, 6M params": (Check("numpy", 5.0),),
    "train step 10-64-32-2 b16": (Check("numpy", 4.0), Check("torch", 15.0)),
    "train step 784-512-256-10 b128": (Check("numpy", 1.4), Check("torch", 1.5)),
    "train step 1024-2048-2048-10 b256": (Check("numpy", 1.6), Check("torch", 1.3)),
    "digits fit, 30 epochs": (Check("sklearn", 3.0), Check("torch", 10.0), Check("accuracy", 0.95)),
}


def all_targets() -> tuple[tuple[str, str], ...]:
    """Every target row: the issue's table, then the targets of its text."""
    return ISSUE_TARGETS + TEXT_TARGETS


def evaluate(group, seconds: dict, missing: dict, fraction_of_peak, accuracy) -> list[dict]:
    """The checks of ``group`` against one row's measurements.

    ``seconds`` maps each system that ran to its median seconds per call, ``missing`` each system
    that could not run to the reason ("not installed"). Each check comes back as a dict with
    ``against``, ``minimum``, ``value`` (None when it could not be measured) and ``status``:
    "PASS", "FAIL", or the reason it was not measured.

    A check of a ratio on a row with a fraction of the peak also gets ``at_peak``: the ratio
    myelin would show running at the measured FMA peak against the same time of the other system
    (the ratio over the fraction), the most any product doing all the row's multiply-adds could
    show; ``beyond_peak`` says the target asks for more than that. Otherwise both are None.
    """
    out = []
    for check in CHECKS.get(group, ()):
        value, status = None, None
        if check.against == "peak":
            value = fraction_of_peak
            status = None if value is not None else "n/a (no peak probe)"
        elif check.against == "accuracy":
            value = accuracy
            status = None if value is not None else "n/a"
        elif check.against in seconds and "myelin" in seconds:
            value = seconds[check.against] / seconds["myelin"]
        else:
            status = missing.get(check.against, "n/a")
        if status is None:
            status = "PASS" if value >= check.minimum else "FAIL"
        at_peak = None
        if (
            value is not None
            and check.against not in ("peak", "accuracy")
            and fraction_of_peak is not None
            and 0 < fraction_of_peak <= 1
        ):
            at_peak = value / fraction_of_peak
        out.append(
            {
                "against": check.against,
                "minimum": check.minimum,
                "target": check.describe(),
                "value": value,
                "status": status,
                "at_peak": at_peak,
                "beyond_peak": None if at_peak is None else at_peak < check.minimum,
            }
        )
    return out
