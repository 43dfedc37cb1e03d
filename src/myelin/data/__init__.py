"""``myelin.data`` (also ``myelin.utils.data``): datasets, the DataLoader and ``Normalize``.

Mirrors ``torch.utils.data`` (https://pytorch.org/docs/stable/data.html)::

    dataset = TensorDataset(X, y)
    train_ds, val_ds = random_split(dataset, [0.8, 0.2])
    train_dl = DataLoader(train_ds, batch_size=16, shuffle=True)
"""

from myelin.data.dataloader import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    Sampler,
    SequentialSampler,
    default_collate,
)
from myelin.data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from myelin.data.distributed import DistributedSampler
from myelin.data.preprocessing import Normalize

__all__ = [
    "BatchSampler",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "Normalize",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "TensorDataset",
    "default_collate",
    "random_split",
]
