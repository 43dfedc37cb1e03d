"""What the suite prints and writes: the machine, the results table, JSON and the ratio chart."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform

# ---------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _blas_info(np) -> str:
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                arch = pool.get("architecture")
                return (
                    f"{pool.get('internal_api')} {pool.get('version')}"
                    + (f" ({arch})" if arch else "")
                    + f", {pool.get('num_threads')} threads"
                )
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no dict mode
        return "unknown BLAS"


def machine_info(threads: int) -> dict:
    """The CPU, the libraries and their thread counts, as a JSON-able dict."""
    import numpy as np
    from cases import torch_module

    import myelin

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        myelin.show_config()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    torch = torch_module()
    try:
        import sklearn

        sklearn_version = sklearn.__version__
    except ImportError:
        sklearn_version = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_info(np),
        "torch": (
            f"{torch.__version__}, {torch.get_num_threads()} threads" if torch else "not installed"
        ),
        "sklearn": sklearn_version,
        "myelin": myelin.__version__,
        "myelin_config": buf.getvalue().rstrip(),
        "threads": threads,
    }


def print_machine(info: dict, peak: dict) -> None:
    print(f"CPU:     {info['cpu']} ({info['cores']} cores usable, {info['machine']})")
    print(f"NumPy:   {info['numpy']} on {info['blas']}")
    print(f"PyTorch: {info['torch']};  scikit-learn: {info['sklearn']}")
    print(f"Python:  {info['python']}")
    print(info["myelin_config"])
    print(f"FMA peak, float32, {info['threads']} threads: {format_peak(peak)}")


def format_peak(peak: dict) -> str:
    if peak.get("gflops") is None:
        return f"n/a ({peak.get('note')})"
    runs = ", ".join(f"{g:.1f}" for g in peak["runs"])
    return f"{peak['gflops']:.1f} GFLOP/s (best of {runs}; {peak['source']})"


# ---------------------------------------------------------------- numbers


def format_time(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def format_rate(rate, unit) -> str:
    if rate is None:
        return "-"
    if unit == "samples/s":
        if rate >= 1e6:
            return f"{rate / 1e6:.2f}M samples/s"
        return f"{rate / 1e3:.1f}k samples/s"
    return f"{rate:.1f} {unit}"


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


# ---------------------------------------------------------------- the table

COLUMNS = (
    "op",
    "shape",
    "dtype",
    "myelin",
    "NumPy",
    "NumPy/myelin",
    "PyTorch",
    "PyTorch/myelin",
    "myelin rate",
    "of peak",
    "max rel diff",
    "target",
    "result",
)
_RIGHT = {"myelin", "NumPy", "NumPy/myelin", "PyTorch", "PyTorch/myelin", "myelin rate", "of peak"}


def _cells(row: dict) -> list[str]:
    seconds = row.get("seconds", {})
    missing = row.get("missing", {})
    baseline = row.get("baseline", "numpy")

    def time_of(system):
        if system in seconds:
            return format_time(seconds[system])
        return missing.get(system, "-")

    numpy_time = time_of(baseline)
    if baseline != "numpy" and baseline in seconds:
        numpy_time = f"{baseline} {numpy_time}"
    rate = format_rate(row.get("rate"), row.get("unit"))
    if row.get("accuracy", {}).get("myelin") is not None:
        rate = f"test acc {row['accuracy']['myelin']:.3f}"
    frac = row.get("fraction_of_peak")
    diffs = row.get("diffs") or {}
    diff = max(diffs.values()) if diffs else None
    return [
        row["op"],
        row["shape"],
        row["dtype"],
        time_of("myelin"),
        numpy_time,
        _ratio(row.get("ratios", {}).get(baseline)),
        time_of("torch"),
        _ratio(row.get("ratios", {}).get("torch")),
        rate,
        "-" if frac is None else f"{frac:.0%}",
        "-" if diff is None else ("0" if diff == 0 else f"{diff:.0e}"),
        row.get("target_text") or "(none in the issue)",
        row.get("result", ""),
    ]


def text_table(rows: list[dict]) -> str:
    body = [_cells(r) for r in rows]
    widths = [max([len(c), *(len(b[i]) for b in body)]) for i, c in enumerate(COLUMNS)]

    def line(cells):
        parts = []
        for col, cell, w in zip(COLUMNS, cells, widths, strict=True):
            parts.append(cell.rjust(w) if col in _RIGHT else cell.ljust(w))
        return "  ".join(parts).rstrip()

    out = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    return "\n".join(out)


def markdown_table(rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if c != "max rel diff"]
    idx = [COLUMNS.index(c) for c in cols]
    align = ["---:" if c in _RIGHT else "---" for c in cols]
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        cells = _cells(row)
        out.append("| " + " | ".join(cells[i].replace("|", "/") for i in idx) + " |")
    return "\n".join(out)


def alloc_table(rows: list[dict]) -> str:
    """Allocations per steady-state training step (NumPy data buffers), one line per system."""
    lines = []
    for row in rows:
        for system, a in (row.get("allocs") or {}).items():
            if a.get("count") is None:
                counted = f"count n/a ({a.get('note')})"
            else:
                counted = (
                    f"{a['count']:5d} allocations, {a['large']:3d} of >= 64 KiB "
                    f"({'none' if a['large'] == 0 else 'NOT none'}), {a['bytes'] / 1024:8.1f} KiB"
                )
            lines.append(
                f"  {row['op']:34s} {system:7s} {counted}; "
                f"tracemalloc peak {a['peak_bytes'] / 1024:.1f} KiB"
            )
    if not lines:
        return ""
    head = "Allocations per training step in steady state (NumPy data buffers, untimed pass):"
    return "\n".join([head, *lines])


def accuracy_lines(rows: list[dict]) -> str:
    """The test accuracy of every system in the rows that fit a model."""
    names = {"myelin": "myelin", "sklearn": "scikit-learn", "torch": "PyTorch"}
    lines = []
    for row in rows:
        acc = row.get("accuracy")
        if acc:
            each = ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in acc.items())
            lines.append(f"Test accuracy, {row['op']} ({row['shape']}): {each}")
    return "\n".join(lines)


# ---------------------------------------------------------------- files


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, allow_nan=False, default=_jsonable)
        f.write("\n")


def _jsonable(x):
    if hasattr(x, "item"):  # NumPy scalars
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def plot(path: str, rows: list[dict], title: str) -> str:
    """A PNG of horizontal bars, one per ratio check (and one per row without a target), with the
    target marked. Returns a message saying what was written or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    bars = []  # (label, value, minimum or None, status)
    for row in rows:
        label = row.get("label", row["op"])
        checks = [c for c in row.get("checks", []) if c["against"] != "accuracy"]
        if not checks and row.get("ratios", {}).get("numpy") is not None:
            bars.append((f"{label} vs NumPy", row["ratios"]["numpy"], None, "info"))
        for c in checks:
            if c["value"] is None:
                continue
            against = {
                "numpy": "vs NumPy",
                "torch": "vs PyTorch",
                "sklearn": "vs sklearn",
                "copy": "vs copy",
                "1 thread": "vs 1 thread",
                "peak": "of peak",
            }[c["against"]]
            bars.append((f"{label} {against}", c["value"], c["minimum"], c["status"]))
    if not bars:
        return "no ratios to plot"
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 0.32 * len(bars) + 1.4))
    ypos = np.arange(len(bars))[::-1]
    colors = {"PASS": "#2e8b57", "FAIL": "#c0392b", "info": "#8c8c8c"}
    values = [b[1] for b in bars]
    ax.barh(ypos, values, color=[colors.get(b[3], "#8c8c8c") for b in bars], height=0.7)
    for y, (_, value, minimum, _) in zip(ypos, bars, strict=True):
        if minimum is not None:
            ax.plot([minimum, minimum], [y - 0.45, y + 0.45], color="black", lw=2)
        ax.text(max(value, minimum or 0) * 1.06, y, f"{value:.2f}", va="center", fontsize=7)
    ax.set_yticks(ypos)
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="#444444", lw=0.8, ls=":")
    minima = [b[2] for b in bars if b[2] is not None]
    ax.set_xlim(min(0.5, min(values) * 0.8), max(values + minima) * 1.6)
    ax.set_xlabel("other system's time / myelin's ('of peak': myelin's share of the FMA peak)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig.legend(
        handles=[
            Patch(color=colors["PASS"], label="meets its target"),
            Patch(color=colors["FAIL"], label="misses its target"),
            Patch(color=colors["info"], label="no target"),
            Line2D([0], [0], color="black", lw=2, label="target"),
        ],
        loc="lower center",
        ncol=4,
        fontsize=7,
        frameon=False,
    )
    ax.set_title(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"chart written to {path}"
