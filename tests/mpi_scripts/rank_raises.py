"""Rank 1 raises while rank 0 waits in the gradient allreduce: the job must end, not hang."""

import numpy as np

import myelin
import myelin.distributed as dist
from myelin import nn

dist.init()
model = dist.DistributedDataParallel(nn.Linear(4, 2))
if dist.rank() == 1:
    raise ValueError("rank 1 failed on purpose")
x = myelin.tensor(np.ones((3, 4), np.float32))
model(x).sum().backward()  # rank 0 blocks here until the abort
print("rank 0 was never stopped")
