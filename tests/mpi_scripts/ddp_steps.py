"""K steps of DistributedDataParallel training, each rank on its slice of a global batch.

Usage: ddp_steps.py OPTIMIZER GLOBAL_BATCH STEPS OUT.npz (run under mpiexec). Rank 0 writes
the final weights of every rank, each rank's local gradients of the first step and the
averaged gradients DDP produced from them.
"""

import sys

import numpy as np

import myelin
import myelin.distributed as dist
from myelin import nn, optim


def make_data(global_batch: int, steps: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((global_batch * steps, 20)).astype(np.float32)
    y = rng.integers(0, 5, global_batch * steps)
    return x, y


def make_model():
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))


def make_optimizer(name: str, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9)
    return optim.Adam(params, lr=1e-2)


def main() -> None:
    name, global_batch, steps, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    dist.init(seed=1)
    r, w = dist.rank(), dist.world_size()
    x, y = make_data(global_batch, steps)
    myelin.manual_seed(100 + r)  # a different initialisation per rank: the wrap must fix it
    net = make_model()
    model = dist.DistributedDataParallel(net)
    opt = make_optimizer(name, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    b = global_batch // w
    local, averaged = None, None
    for t in range(steps):
        rows = slice(t * global_batch + r * b, t * global_batch + (r + 1) * b)
        opt.zero_grad()
        if t == 0:
            with model.no_sync():
                loss_fn(model(myelin.tensor(x[rows])), myelin.tensor(y[rows])).backward()
            local = [np.array(p.grad) for p in net.parameters()]
            opt.zero_grad()
        loss_fn(model(myelin.tensor(x[rows])), myelin.tensor(y[rows])).backward()
        if t == 0:
            averaged = [np.array(p.grad) for p in net.parameters()]
        opt.step()
    weights = [p.data.copy() for p in net.parameters()]
    seeds = []
    for _ in range(2):  # per-rank dropout masks: distinct across ranks, repeated when reseeded
        dist.manual_seed(7)
        seeds.append(nn.functional.dropout(myelin.ones(64), 0.5, training=True).numpy())
    comm = dist._world()
    gathered = comm.gather((weights, local, averaged, model.comm_steps, seeds), root=0)
    if r == 0:
        arrays = {}
        for rank_, (ws, ls, avs, n, masks) in enumerate(gathered):
            arrays[f"steps_{rank_}"] = np.array(n)
            arrays[f"masks_{rank_}"] = np.stack(masks)
            for i, (wi, li, ai) in enumerate(zip(ws, ls, avs, strict=True)):
                arrays[f"w_{rank_}_{i}"] = wi
                arrays[f"local_{rank_}_{i}"] = li
                arrays[f"avg_{rank_}_{i}"] = ai
        np.savez(out, **arrays)


if __name__ == "__main__":
    main()
