"""Handwritten digits learned data-parallel: every MPI rank trains on its shard of the data.

Run: mpiexec -n 2 python examples/distributed_digits.py   (needs pip install ".[mpi]")

Each rank builds the same model; DistributedDataParallel copies rank 0's weights to the others
and, in every backward pass, averages the gradients over the ranks, so the copies stay equal.
``fit`` gives each rank a disjoint shard of the training set per epoch (reshuffled each epoch
from a seed the ranks share), averages the epoch's loss and accuracy over all ranks, and only
rank 0 prints. With N ranks of batch 32 a step sees 32*N samples.

The data is scikit-learn's 8x8 digits (1797 images); without scikit-learn a synthetic
10-class problem of the same shape stands in, so the example always runs.
It also runs as one process (python examples/distributed_digits.py): a world of one rank.
"""

import argparse
import time

import numpy as np

import myelin
import myelin.distributed as dist
from myelin import nn
from myelin.data import Normalize


def load_digits():
    """(x, y, name): 64 features per image in [0, 16] and labels 0..9."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        rng = np.random.default_rng(0)
        centers = rng.uniform(0, 16, size=(10, 64))
        y = rng.integers(0, 10, 1797)
        x = np.clip(centers[y] + rng.normal(0, 4, size=(1797, 64)), 0, 16)
        return x.astype(np.float32), y, "synthetic digits (scikit-learn not installed)"
    digits = sklearn_digits()
    return digits.data.astype(np.float32), digits.target.astype(np.int64), "scikit-learn digits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32, help="samples per rank and step")
    parser.add_argument("--save", default=None, help="rank 0 saves the trained model here")
    args = parser.parse_args()

    dist.init(seed=0)  # rank and world size from mpiexec; dropout seeds differ per rank
    x, y, name = load_digits()
    order = np.random.default_rng(42).permutation(len(x))  # the same split on every rank
    test, train = order[:360], order[360:]
    scaler = Normalize().fit(x[train])
    x = scaler.transform(x)

    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10), nn.Softmax(dim=1)
    )
    model = dist.DistributedDataParallel(model)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if dist.rank() == 0:
        print(f"{name}: {len(train)} training images over {dist.world_size()} rank(s)")
    t0 = time.perf_counter()
    model.fit(x[train], y[train], epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    seconds = time.perf_counter() - t0

    logs = model.evaluate(x[test], y[test], return_dict=True)  # every rank holds the same weights
    if dist.rank() == 0:
        print(
            f"test accuracy {logs['accuracy']:.3f} (loss {logs['loss']:.3f}); "
            f"training {seconds:.1f}s, {model.comm_seconds * 1e3 / max(model.comm_steps, 1):.2f} "
            f"ms per step in the gradient allreduce"
        )
        if args.save:
            myelin.save(model.module.state_dict(), args.save)
            print(f"saved the weights to {args.save}")


if __name__ == "__main__":
    main()
