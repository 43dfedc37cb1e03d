"""``fit`` of a DistributedDataParallel model (run under mpiexec): writes rank 0's history, the
weights of every rank and what each rank printed to OUT.npz.

Usage: fit_sharded.py BATCH_PER_RANK EPOCHS OUT.npz wrap|plain (plain: fit(distributed=True)
of the unwrapped model)
"""

import contextlib
import io
import json
import sys

import numpy as np

import myelin
import myelin.distributed as dist
from myelin import nn


def make_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 20)).astype(np.float32)
    y = rng.integers(0, 3, 256)
    return x, y


def make_model():
    myelin.manual_seed(5)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 3), nn.Softmax(dim=1))


def main() -> None:
    batch, epochs, out, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init(seed=3)
    x, y = make_data()
    net = make_model()
    model = dist.DistributedDataParallel(net) if mode == "wrap" else net
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        history = model.fit(
            x, y, epochs=epochs, batch_size=batch, shuffle=False, verbose=2, distributed=True
        )
    weights = [p.data.copy() for p in net.parameters()]
    gathered = dist._world().gather((weights, printed.getvalue(), history.history), root=0)
    if dist.rank() != 0:
        return
    arrays = {}
    for rank_, (ws, text, hist) in enumerate(gathered):
        arrays[f"printed_{rank_}"] = np.array(text)
        arrays[f"history_{rank_}"] = np.array(json.dumps(hist))
        for i, wi in enumerate(ws):
            arrays[f"w_{rank_}_{i}"] = wi
    np.savez(out, **arrays)


if __name__ == "__main__":
    main()
