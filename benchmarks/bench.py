"""myelin against NumPy and PyTorch, side by side in one process, with the targets of issue 4.

Every case runs the same computation on the same inputs in myelin, in NumPy (plain ``a @ b`` for
GEMMs, ``myelin.reference`` otherwise) and in PyTorch where it is installed, all on the same number
of threads (2 by default, set explicitly for each library). Each case first checks once that the
outputs agree; then every case is timed in rounds that go through all the cases, a round timing
the systems of a case one after the other, each block after an untimed settle, and the medians
over the rounds are reported; training steps also get an untimed pass that counts their
allocations. The FMA peak of the machine is measured with myelin's probe
(``myelin._kernels.fma_peak_gflops``) before and after the cases, and the higher figure is the
peak GEMM rows are compared with.

    python benchmarks/bench.py --quick     # a subset, under a minute (CI, the README)
    python benchmarks/bench.py             # every case, a few minutes
    python benchmarks/bench.py --smoke     # every case once at a toy size: checks the suite runs

Results go to a JSON file and a PNG chart of the ratios (``--json``, ``--plot``; by default
``benchmarks/results/bench-<mode>.json`` and ``.png``), and optionally a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

# Largest relative difference from NumPy's output that still counts as the same result.
AGREE = {"float32": 1e-4, "float64": 1e-10}
SHARED = 0.05  # a block that waited this share of its time for a CPU ran on a busy machine
# A system whose slowest round is this many times its fastest is reported as noisy.
NOISY = 1.5
# A target's status when each of its misses asks for more than the measured FMA peak allows.
BEYOND_PEAK = "FAIL (beyond peak)"


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a subset of the cases, under a minute")
    size.add_argument(
        "--smoke", action="store_true", help="every case once at a toy size (tests the suite)"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for every library (2)")
    parser.add_argument("--json", metavar="PATH", help="where to write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="where to write the PNG chart of ratios")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the chart")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    parser.add_argument(
        "--only", metavar="TEXT", action="append", help="run only cases whose key contains TEXT"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def _set_threads(threads: int):
    """The same thread count for every library; returns what keeps threadpoolctl's limit alive."""
    import myelin

    myelin.set_num_threads(threads)
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    except ImportError:
        pass  # OPENBLAS_NUM_THREADS, set before NumPy loaded, does it
    from cases import torch_module

    torch = torch_module()
    if torch is not None:
        torch.set_num_threads(threads)
    return limiter


def measure_peak(threads: int, seconds: float) -> float | None:
    """The float32 FMA peak of ``threads`` threads in GFLOP/s, from the C probe built with myelin;
    None when this build has no probe (then no row gets a fraction of peak: no estimate made in
    Python could tell what the vector units can do)."""
    from myelin import _kernels

    probe = getattr(_kernels, "fma_peak_gflops", None)
    if probe is None:
        return None
    return float(probe(threads, seconds))


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _finite(x):
    return x if x is None or math.isfinite(x) else None


def _failed(errors: list, key: str, inline: bool = False) -> None:
    """Record the exception being handled for case ``key`` and print it."""
    errors.append(f"{key}:\n{traceback.format_exc()}")
    print(" FAILED" if inline else f"{key} FAILED", file=sys.stderr)
    print(errors[-1], file=sys.stderr)


def fit_rounds(mode) -> set:
    """The rounds a whole-fit case takes part in: ``mode.fit_rounds`` of them (a fit takes
    seconds), spread evenly over the run."""
    n = max(1, min(mode.fit_rounds, mode.rounds))
    if n == 1:
        return {0}
    return {round(i * (mode.rounds - 1) / (n - 1)) for i in range(n)}


def prepare_case(case, mode) -> tuple:
    """A case's row with its outputs verified, and its timer ready (None when the case cannot
    run)."""
    from timing import Interleaved

    row = {
        "key": case.key,
        "label": case.label,
        "op": case.op,
        "shape": case.shape,
        "dtype": case.dtype,
        "group": case.group,
        "unit": case.unit,
        "baseline": case.baseline_label,
        "missing": dict(case.missing),
    }
    if case.unavailable:
        row["unavailable"] = case.unavailable
        return row, None
    row["diffs"] = {k: _finite(v) for k, v in (case.verify() if case.verify else {}).items()}
    return row, Interleaved(case.fns, mode.block, mode.warmup)


def measure_case(case, row: dict, timer, mode) -> dict:
    """Medians, spreads and CPU waits of a case's rounds, its allocation counts and accuracies."""
    from allocs import count_allocations
    from timing import summarize

    row["seconds"], spread = summarize(timer.samples)
    row["samples"] = timer.samples
    row["spread"] = {k: _finite(v) for k, v in spread.items()}
    row["waited"] = {k: statistics.median(v) for k, v in timer.waits.items() if v}
    if case.alloc_steps:
        steps, warmup = (1, 1) if mode.smoke else (5, 3)
        row["allocs"] = {
            name: count_allocations(step, steps=steps, warmup=warmup)
            for name, step in case.alloc_steps.items()
        }
    if case.accuracy:
        row["accuracy"] = {k: statistics.median(v) for k, v in case.accuracy.items()}
    row["_work"], row["_flops"], row["_gemm"] = case.work, case.flops, case.gemm
    return row


def finish_row(row: dict, peak: float | None) -> dict:
    """Ratios, rates, fraction of peak and the target checks of a measured row."""
    import targets

    work, flops, gemm = row.pop("_work", None), row.pop("_flops", None), row.pop("_gemm", False)
    group = row.get("group")
    row["target_text"] = ", ".join(c.describe() for c in targets.CHECKS.get(group, ()))
    if "unavailable" in row:
        row["checks"] = targets.evaluate(group, {}, row["missing"], None, None)
        for c in row["checks"]:
            c["status"] = row["unavailable"]
        row["result"] = row["unavailable"]
        return row
    seconds = row["seconds"]
    t = seconds["myelin"]
    row["ratios"] = {k: v / t for k, v in seconds.items() if k != "myelin"}
    scale = 1e-9 if row["unit"] in ("GFLOP/s", "GB/s") else 1.0
    row["rate"] = work * scale / t if work else None
    if flops:
        row["gflops"] = flops / t / 1e9
    row["fraction_of_peak"] = None
    if gemm and peak:
        dtype_peak = peak if row["dtype"] == "float32" else peak / 2  # half the lanes
        row["fraction_of_peak"] = row["rate"] / dtype_peak
    accuracy = row.get("accuracy", {}).get("myelin")
    row["checks"] = targets.evaluate(
        group, seconds, row["missing"], row["fraction_of_peak"], accuracy
    )
    tol = AGREE.get(row["dtype"], 1e-4)
    bad = [k for k, v in row.get("diffs", {}).items() if v is None or v > tol]
    row["outputs_agree"] = not bad
    statuses = [c["status"] for c in row["checks"]]
    if not statuses:
        verdict = "no target"
    elif "FAIL" in statuses:
        verdict = "FAIL"
    elif all(s == "PASS" for s in statuses):
        verdict = "PASS"
    elif "PASS" in statuses:
        verdict = "PASS (part)"
    else:
        verdict = "not measured"
    measured = [
        targets.Check(c["against"], c["minimum"]).format_value(c["value"])
        + (f" (the FMA peak allows {c['at_peak']:.2f}x)" if c["beyond_peak"] else "")
        for c in row["checks"]
        if c["value"] is not None
    ]
    unmeasured = [f"{c['against']} {c['status']}" for c in row["checks"] if c["value"] is None]
    details = ", ".join(measured + unmeasured)
    row["result"] = verdict + (f": {details}" if details else "")
    if bad:
        row["result"] = f"OUTPUTS DIFFER ({', '.join(bad)}); " + row["result"]
    return row


def target_summary(rows: list[dict]) -> list[dict]:
    """Each target of the issue with the rows that measure it and its overall status."""
    import targets

    out = []
    for group, text in targets.all_targets():
        members = [r for r in rows if r.get("group") == group]
        checks = [c for r in members for c in r.get("checks", [])]
        statuses = [c["status"] for c in checks]
        agree = all(r.get("outputs_agree", True) for r in members)
        if not members:
            status = "not run"
        elif "FAIL" in statuses or not agree:
            failed = [c for c in checks if c["status"] == "FAIL"]
            beyond = agree and bool(failed) and all(c.get("beyond_peak") for c in failed)
            status = BEYOND_PEAK if beyond else "FAIL"
        elif statuses and all(s == "PASS" for s in statuses):
            status = "PASS"
        else:
            status = "not fully measured"
        out.append(
            {"case": group, "target": text, "rows": [r["key"] for r in members], "status": status}
        )
    return out


def main(argv=None) -> int:
    args = _parse(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    # Before NumPy loads its BLAS: its thread count (threadpoolctl, when installed, also sets it).
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, HERE)

    import cases
    import report
    import targets

    mode = cases.MODES[mode_name]
    _limiter = _set_threads(args.threads)  # noqa: F841  (kept alive for the whole run)
    info = report.machine_info(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc)

    load = {"start": _loadavg()}
    peak_runs = []
    first = measure_peak(args.threads, mode.peak_seconds)
    if first is not None:
        peak_runs.append(first)

    # Every case is set up first, then timed in rounds that go through all the cases, each
    # round timing every system of a case in turn: the rounds of a case are spread over the
    # whole run, so a stretch in which the host of a virtual machine takes a core away (seconds,
    # unseen by the guest) slows one or two of a case's rounds, not all of them, and the median
    # is that of the machine as it usually is.
    factories = cases.cases_for(mode)
    entries, errors = [], []
    for i, factory in enumerate(factories, 1):
        t0 = time.perf_counter()
        try:
            case = factory(mode)
        except Exception:
            errors.append(traceback.format_exc())
            print(f"[{i:2d}/{len(factories)}] case setup failed", file=sys.stderr)
            print(errors[-1], file=sys.stderr)
            continue
        if args.only and not any(text in case.key for text in args.only):
            continue
        print(f"[{i:2d}/{len(factories)}] {case.key} ...", end="", file=sys.stderr, flush=True)
        try:
            row, timer = prepare_case(case, mode)
        except Exception:
            _failed(errors, case.key, inline=True)
            continue
        fits = case.key == "digits-fit"
        entries.append((case, row, timer, fit_rounds(mode) if fits else range(mode.rounds)))
        print(f" ready ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    for r in range(mode.rounds):
        t0 = time.perf_counter()
        for entry in list(entries):
            case, _, timer, rounds = entry
            if timer is None or r not in rounds:
                continue
            try:
                timer.round(mode.settle)
            except Exception:
                _failed(errors, case.key)
                entries.remove(entry)
        print(
            f"round {r + 1}/{mode.rounds} of every case: {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    rows = []
    for case, row, timer, _ in entries:
        try:
            rows.append(row if timer is None else measure_case(case, row, timer, mode))
        except Exception:
            _failed(errors, case.key)

    load["end"] = _loadavg()
    second = measure_peak(args.threads, mode.peak_seconds)
    if second is not None:
        peak_runs.append(second)
    peak = {
        "gflops": max(peak_runs) if peak_runs else None,
        "runs": peak_runs,
        "threads": args.threads,
        "source": "myelin._kernels.fma_peak_gflops (12 FMA chains per thread, widest vectors)",
        "note": None if peak_runs else "this build of myelin has no fma_peak_gflops probe",
    }
    for row in rows:
        finish_row(row, peak["gflops"])
    summary = target_summary(rows)

    print()
    report.print_machine(info, peak)
    print(
        f"mode {mode.name}: medians of {mode.rounds} rounds through every case "
        f"({len(fit_rounds(mode))} for a whole fit), the systems of a case interleaved; "
        f"{args.threads} threads "
        f"for myelin, NumPy's BLAS and PyTorch; load average {load['start']} at the start, "
        f"{load['end']} at the end"
    )
    print()
    print(report.text_table(rows))
    accuracies = report.accuracy_lines(rows)
    if accuracies:
        print()
        print(accuracies)
    allocations = report.alloc_table(rows)
    if allocations:
        print()
        print(allocations)
    noisy = [
        f"{r['key']} ({', '.join(f'{k} {v:.1f}x' for k, v in r['spread'].items() if v > NOISY)})"
        for r in rows
        if any(v is None or v > NOISY for v in r.get("spread", {}).values())
    ]
    if noisy and not mode.smoke:
        print(
            f"\nNoisy (a system's slowest round over {NOISY}x its fastest; was something else "
            f"running?): {'; '.join(noisy)}"
        )
    contended = [
        f"{r['key']} ({', '.join(f'{k} {v:.0%}' for k, v in r['waited'].items() if v > SHARED)})"
        for r in rows
        if any(v > SHARED for v in r.get("waited", {}).values())
    ]
    worst = max((v for r in rows for v in r.get("waited", {}).values()), default=None)
    if worst is not None:
        print(
            f"\nTime the timed blocks waited for a CPU (median per system, as a share of the "
            f"block): at most {worst:.1%} in any case"
            + (
                f"; over {SHARED:.0%}, so the machine was shared: {'; '.join(contended)}"
                if contended
                else " (no other program of this machine competed for the CPUs; the host of a"
                " virtual machine can still take a core away unseen, which only the times show)"
            )
        )
    print()
    print("Targets of issue 4:")
    for t in summary:
        print(f"  {t['status']:18s} {t['case']}: {t['target']}")
    if any(t["status"] == BEYOND_PEAK for t in summary):
        print(
            f"\n{BEYOND_PEAK}: every miss of the target asks for more than the measured FMA peak "
            "allows against that run's time of the other system (the row's result says how much "
            "it allows): no product doing all the multiply-adds can meet it in that run"
        )
    if errors:
        print(f"\n{len(errors)} case(s) raised an error (tracebacks above, on stderr)")

    payload = {
        "suite": "myelin benchmarks (issue 4)",
        "mode": mode.name,
        "started_utc": started.isoformat(timespec="seconds"),
        "settings": {
            "threads": args.threads,
            "load_average": load,
            "rounds": mode.rounds,
            "fit_rounds": len(fit_rounds(mode)),
            "settle_seconds": mode.settle,
            "block_seconds": mode.block,
        },
        "machine": info,
        "peak": peak,
        "rows": rows,
        "targets": summary,
        "issue_targets": [list(t) for t in targets.all_targets()],
        "errors": errors,
    }
    json_path = args.json or os.path.join(RESULTS, f"bench-{mode.name}.json")
    report.write_json(json_path, payload)
    print(f"\nresults written to {json_path}")
    if not args.no_plot:
        plot_path = args.plot or os.path.join(RESULTS, f"bench-{mode.name}.png")
        title = (
            f"myelin, {mode.name} run {started:%Y-%m-%d}: {info['cpu']}, {args.threads} threads; "
            f"numpy {info['numpy']}, torch {info['torch'].split(',')[0]}"
        )
        print(report.plot(plot_path, rows, title))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.markdown_table(rows) + "\n")
        print(f"Markdown table written to {args.markdown}")
    if errors:
        return 1
    if args.strict and any(t["status"] != "PASS" for t in summary):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
