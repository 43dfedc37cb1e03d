"""Rank 1 builds a different model: wrapping it must fail on every rank with a clear error."""

import myelin.distributed as dist
from myelin import nn

dist.init()
hidden = 16 if dist.rank() == 0 else 17
dist.DistributedDataParallel(nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2)))
print("wrapped without noticing")
