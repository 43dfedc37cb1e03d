"""Data-parallel training speed: the 784-512-256-10 MLP at 1 and 2 MPI ranks.

Run: python benchmarks/distributed.py [--steps 40] [--batch 128]

The launcher starts one job per configuration with mpiexec (1 rank x 1 thread, 1 rank x 2
threads, 2 ranks x 1 thread; OMP_NUM_THREADS sets the threads) and prints, per configuration:
training steps per second (batch per rank, so 2 ranks process twice the samples per step),
samples per second, and the time per step spent in the gradient allreduce as DDP sees it
(waiting for the slower rank included). A 2-rank job also times the allreduce of the same
buffer alone, right after a barrier (the transfer itself), and the 1-rank jobs time one step
at other batch sizes (the compute that could hide communication, for docs/distributed.md).

The step is myelin's own: zero_grad, forward, cross-entropy, backward (the gradients are
averaged before it returns), Adam step. Timings are medians over blocks of steps; the load
average of the machine is printed with them, since other programs slow every rank alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (784, 512, 256, 10)


def _median_step(step, steps: int, blocks: int = 5) -> float:
    per = max(1, steps // blocks)
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(per):
            step()
        times.append((time.perf_counter() - t0) / per)
    return statistics.median(times)


def worker(steps: int, batch: int, batches: list, sizes: tuple) -> None:
    from cases import _myelin_mlp  # the suite's MLP (benchmarks/ is on sys.path)

    import myelin
    import myelin.distributed as dist
    from myelin import nn, optim

    dist.init(seed=0)
    world, rank = dist.world_size(), dist.rank()
    myelin.manual_seed(0)
    net = _myelin_mlp(sizes)
    model = dist.DistributedDataParallel(net) if world > 1 else net
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(rank)

    def make_step(b: int):
        x = myelin.tensor(rng.standard_normal((b, sizes[0])).astype(np.float32))
        y = myelin.tensor(rng.integers(0, sizes[-1], b))

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        return step

    step = make_step(batch)
    for _ in range(5):
        step()
    if world > 1:
        dist.barrier()
        object.__setattr__(model, "comm_seconds", 0.0)
        object.__setattr__(model, "comm_steps", 0)
    t_step = _median_step(step, steps)
    out = {"world": world, "threads": myelin.get_num_threads(), "step_s": t_step}
    if world > 1:
        out["ddp_allreduce_s"] = model.comm_seconds / max(model.comm_steps, 1)
        buf = model._buckets[0].buf
        out["grad_bytes"] = int(sum(b.n * b.buf.itemsize for b in model._buckets))
        times = []
        for _ in range(20):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            times.append(time.perf_counter() - t0)
        out["bare_allreduce_s"] = statistics.median(times)
    else:
        out["batch_step_s"] = {}
        for b in batches:
            s = make_step(b)
            s()
            out["batch_step_s"][b] = _median_step(s, max(5, steps * batch // (4 * b)))
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("mpiexec not found: pip install '.[mpi]'")
    return found


def launch(ranks: int, threads: int, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, __file__, "--worker"]
    cmd += ["--steps", str(args.steps), "--batch", str(args.batch)]
    cmd += ["--batches", ",".join(map(str, args.batches))]
    cmd += ["--sizes", ",".join(map(str, args.sizes))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"{ranks} rank(s) x {threads} thread(s) failed:\n{proc.stderr}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=128, help="samples per rank and step")
    parser.add_argument("--batches", default="32,128,512,2048", help="1-rank step sizes to time")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="the MLP's widths")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.sizes = tuple(int(n) for n in args.sizes.split(",") if n)
    if args.worker:
        worker(args.steps, args.batch, args.batches, args.sizes)
        return
    print(
        f"MLP {'-'.join(map(str, args.sizes))}, batch {args.batch} per rank, Adam; "
        f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for ranks, threads in ((1, 1), (1, 2), (2, 1)):
        r = launch(ranks, threads, args)
        rows.append((ranks, threads, r))
        sps = 1.0 / r["step_s"]
        line = (
            f"{ranks} rank(s) x {threads} thread(s): {sps:7.1f} steps/s, "
            f"{sps * args.batch * ranks:9.0f} samples/s, step {r['step_s'] * 1e3:6.2f} ms"
        )
        if ranks > 1:
            line += (
                f", allreduce in the step {r['ddp_allreduce_s'] * 1e3:.2f} ms "
                f"(alone {r['bare_allreduce_s'] * 1e3:.2f} ms for {r['grad_bytes'] / 1e6:.2f} MB)"
            )
        print(line, flush=True)
        if "batch_step_s" in r:
            steps = ", ".join(f"B={b}: {t * 1e3:.2f} ms" for b, t in r["batch_step_s"].items())
            print(f"    one step on 1 rank x {threads} thread(s): {steps}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
