"""myelin.data: datasets, random_split, DataLoader (fast and generic paths), samplers,
default_collate and Normalize, against plain NumPy transcriptions of the PyTorch / scikit-learn
definitions."""

import math
import warnings
from collections import namedtuple

import numpy as np
import pytest

import myelin
from myelin import Tensor
from myelin.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    Normalize,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)

# ---------------------------------------------------------------- helpers


class Wrapped(Dataset):
    """A dataset the DataLoader cannot batch by fancy indexing: the generic path."""

    def __init__(self, inner):
        self.inner = inner

    def __getitem__(self, i):
        return self.inner[i]

    def __len__(self):
        return len(self.inner)


def ids_dataset(n):
    """Sample i is (float row [i, -i], label i): the label identifies the sample."""
    ids = np.arange(n, dtype=np.int64)
    x = np.stack([ids, -ids], axis=1).astype(np.float32)
    return TensorDataset(x, ids)


def epoch_ids(loader):
    return [np.asarray(yb).tolist() for _, yb in loader]


def reference_split_lengths(n, fractions):
    """PyTorch's rule: floor each share, then add 1 round robin until the lengths sum to n."""
    lengths = [int(math.floor(n * f)) for f in fractions]
    i = 0
    while sum(lengths) < n:
        lengths[i % len(lengths)] += 1
        i += 1
    return lengths


# ---------------------------------------------------------------- TensorDataset, Subset, Concat


def test_tensor_dataset_stores_tensors_and_indexes_like_numpy():
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    ds = TensorDataset(x, [0, 1, 2, 3, 4, 5], myelin.randn(6))
    assert len(ds) == 6
    assert all(isinstance(t, Tensor) for t in ds.tensors)
    assert ds.tensors[0].dtype == np.float64 and ds.tensors[1].dtype == np.int64
    assert np.shares_memory(ds.tensors[0].data, x)
    for index in (3, -1, slice(1, 5, 2), [4, 0, 4], np.array([2, 5]), myelin.tensor([1, 3])):
        sample = ds[index]
        assert isinstance(sample, tuple) and len(sample) == 3
        np_index = index.numpy() if isinstance(index, Tensor) else index
        np.testing.assert_array_equal(sample[0].numpy(), x[np_index])
        np.testing.assert_array_equal(sample[1].numpy(), np.arange(6)[np_index])


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match=r"\[5, 4\]"):
        TensorDataset(np.zeros((5, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(ValueError, match="0-dimensional"):
        TensorDataset(np.float32(1.0))
    with pytest.raises(TypeError, match="tensor 1"):
        TensorDataset(np.zeros(2), ["a", "b"])


def test_subset_and_nested_subset():
    ds = ids_dataset(10)
    sub = Subset(ds, np.array([9, 2, 5, 7]))
    assert sub.indices == [9, 2, 5, 7] and len(sub) == 4
    assert sub[1][1].item() == 2
    np.testing.assert_array_equal(sub[[0, 3]][1].numpy(), [9, 7])
    np.testing.assert_array_equal(sub[1:3][1].numpy(), [2, 5])
    nested = Subset(sub, [3, 0])
    assert [nested[i][1].item() for i in range(2)] == [7, 9]
    with pytest.raises(ValueError, match="index 10 is out of range for a dataset of 10"):
        Subset(ds, [1, 10])
    with pytest.raises(TypeError, match="integers"):
        Subset(ds, [0.5, 1.0])
    with pytest.raises(TypeError, match="map-style"):
        Subset(object(), [0])


def test_concat_dataset_and_add():
    a, b = ids_dataset(3), TensorDataset(np.zeros((2, 2), np.float32), np.array([10, 11]))
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 5
    assert both.cumulative_sizes == [3, 5]
    assert [both[i][1].item() for i in range(5)] == [0, 1, 2, 10, 11]
    assert both[-1][1].item() == 11 and both[-5][1].item() == 0
    with pytest.raises(IndexError, match="out of range"):
        both[5]
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])
    with pytest.raises(TypeError, match="integers"):
        both[1:2]


# ---------------------------------------------------------------- random_split


@pytest.mark.parametrize(
    "n, lengths",
    [(10, [7, 3]), (10, [10, 0]), (1, [1]), (0, [0, 0])],
)
def test_random_split_int_lengths(n, lengths):
    parts = random_split(ids_dataset(n), lengths, generator=myelin.Generator(3))
    assert [len(p) for p in parts] == lengths
    seen = [i for p in parts for i in p.indices]
    assert sorted(seen) == list(range(n))  # disjoint and covering


@pytest.mark.parametrize(
    "n, fractions",
    [(10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]), (200, [0.8, 0.2]), (5, [0.1, 0.1, 0.8])],
)
def test_random_split_fractions_follow_pytorch_rule(n, fractions):
    expected = reference_split_lengths(n, fractions)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = random_split(ids_dataset(n), fractions, generator=myelin.Generator(0))
    assert len(caught) == expected.count(0)  # one warning per empty split
    assert [len(p) for p in parts] == expected
    assert sorted(i for p in parts for i in p.indices) == list(range(n))


def test_random_split_is_reproducible():
    ds = ids_dataset(50)
    myelin.manual_seed(11)
    a = [p.indices for p in random_split(ds, [30, 20])]
    myelin.manual_seed(11)
    b = [p.indices for p in random_split(ds, [30, 20])]
    assert a == b
    c = [p.indices for p in random_split(ds, [30, 20])]
    assert c != a  # the default generator moved on
    g1, g2 = myelin.Generator(5), myelin.Generator(5)
    assert [p.indices for p in random_split(ds, [0.6, 0.4], generator=g1)] == [
        p.indices for p in random_split(ds, [0.6, 0.4], generator=g2)
    ]


def test_random_split_errors():
    ds = ids_dataset(10)
    with pytest.raises(ValueError, match=r"sum to 9.*10"):
        random_split(ds, [5, 4])
    with pytest.raises(ValueError, match="sum to"):
        random_split(ds, [0.5, 0.4])
    with pytest.raises(ValueError, match="non-negative"):
        random_split(ds, [12, -2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_split(ds, [1.5, -0.5])
    with pytest.raises(TypeError, match="ints or fractions"):
        random_split(ds, ["5", 5])
    with pytest.raises(TypeError, match="generator"):
        random_split(ds, [5, 5], generator=42)


# ---------------------------------------------------------------- DataLoader: coverage


@pytest.mark.parametrize("n", [0, 1, 12, 13])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("generic", [False, True])
def test_loader_covers_every_sample_once(n, shuffle, drop_last, generic):
    bs = 4
    ds = ids_dataset(n)
    loader = DataLoader(
        Wrapped(ds) if generic else ds, batch_size=bs, shuffle=shuffle, drop_last=drop_last
    )
    expected_batches = n // bs if drop_last else -(-n // bs)
    assert len(loader) == expected_batches
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == expected_batches
        ids = []
        for xb, yb in batches:
            assert isinstance(xb, Tensor) and isinstance(yb, Tensor)
            assert xb.dtype == np.float32 and yb.dtype == np.int64
            assert xb.shape == (len(yb), 2)
            np.testing.assert_array_equal(xb.numpy()[:, 0], yb.numpy())
            ids.extend(yb.numpy().tolist())
        sizes = [len(yb) for _, yb in batches]
        assert all(s == bs for s in sizes[:-1])
        if drop_last:
            assert all(s == bs for s in sizes)
            assert len(set(ids)) == len(ids) == bs * (n // bs)
            assert set(ids) <= set(range(n))
        else:
            assert sorted(ids) == list(range(n))
        if not shuffle:
            assert ids == list(range(len(ids)))


def test_shuffle_changes_each_epoch_and_repeats_under_a_seed():
    ds = ids_dataset(40)
    myelin.manual_seed(7)
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    e1, e2 = epoch_ids(loader), epoch_ids(loader)
    assert e1 != e2
    myelin.manual_seed(7)  # reseeding after the loader was built still applies
    assert epoch_ids(loader) == e1 and epoch_ids(loader) == e2
    g = myelin.Generator(123)
    a = epoch_ids(DataLoader(ds, batch_size=8, shuffle=True, generator=g))
    g.manual_seed(123)
    assert epoch_ids(DataLoader(ds, batch_size=8, shuffle=True, generator=g)) == a


@pytest.mark.parametrize("shuffle", [False, True])
def test_fast_path_matches_generic_path(shuffle):
    ds = ids_dataset(37)
    nested = Subset(Subset(ds, np.arange(36, -1, -1)), np.arange(0, 37, 2))
    for source in (ds, Subset(ds, [5, 3, 30, 1, 2, 8, 13]), nested):
        fast = DataLoader(source, batch_size=5, shuffle=shuffle, generator=myelin.Generator(9))
        slow = DataLoader(
            Wrapped(source), batch_size=5, shuffle=shuffle, generator=myelin.Generator(9)
        )
        pairs = list(zip(fast, slow, strict=True))
        assert len(pairs) == len(fast)
        for (xf, yf), (xs, ys) in pairs:
            assert xf.dtype == xs.dtype and yf.dtype == ys.dtype
            np.testing.assert_array_equal(xf.numpy(), xs.numpy())
            np.testing.assert_array_equal(yf.numpy(), ys.numpy())


def test_fast_path_indexes_each_tensor_once_per_batch(monkeypatch):
    ds = Subset(ids_dataset(20), np.arange(19, -1, -1))
    calls = []
    original = Tensor.__getitem__

    def counting(self, index):
        calls.append(index)
        return original(self, index)

    monkeypatch.setattr(Tensor, "__getitem__", counting)
    loader = DataLoader(ds, batch_size=8, collate_fn=default_collate)
    batches = list(loader)
    assert len(calls) == 2 * len(batches) == 6
    np.testing.assert_array_equal(batches[0][1].numpy(), np.arange(19, 11, -1))


def test_labels_keep_their_integer_dtype():
    ds = TensorDataset(np.zeros((6, 2), np.float64), np.arange(6, dtype=np.int32))
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert xb.dtype == np.float64 and yb.dtype == np.int32


def test_article_usage():
    myelin.manual_seed(0)
    X = myelin.randn(200, 10)
    y = (X[:, 0] + X[:, 1] > 0).long()
    dataset = TensorDataset(X, y)
    train_ds, val_ds = myelin.utils.data.random_split(dataset, [160, 40])
    train_dl = DataLoader(train_ds, batch_size=16, shuffle=True)
    assert len(train_dl) == 10
    rows = []
    for xb, yb in train_dl:
        assert xb.shape == (16, 10) and yb.shape == (16,) and yb.dtype == np.int64
        xn = xb.numpy()
        np.testing.assert_array_equal(yb.numpy(), (xn[:, 0] + xn[:, 1] > 0).astype(np.int64))
        rows.append(xn)
    got = np.concatenate(rows)
    want = X.numpy()[train_ds.indices]
    order = np.lexsort(got.T)
    np.testing.assert_array_equal(got[order], want[np.lexsort(want.T)])
    assert set(train_ds.indices).isdisjoint(val_ds.indices)


# ---------------------------------------------------------------- samplers, collate


def test_samplers():
    ds = ids_dataset(7)
    assert list(SequentialSampler(ds)) == list(range(7))
    assert len(SequentialSampler(ds)) == 7
    perm = list(RandomSampler(ds, generator=myelin.Generator(1)))
    assert sorted(perm) == list(range(7))
    drawn = list(RandomSampler(ds, replacement=True, num_samples=30, generator=myelin.Generator(1)))
    assert len(drawn) == 30 and set(drawn) <= set(range(7))
    long_perm = list(RandomSampler(ds, num_samples=10, generator=myelin.Generator(2)))
    assert sorted(long_perm[:7]) == list(range(7)) and len(long_perm) == 10
    bs = BatchSampler(SequentialSampler(ds), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    bs = BatchSampler(range(7), 3, drop_last=True)
    assert list(bs) == [[0, 1, 2], [3, 4, 5]] and len(bs) == 2
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        BatchSampler(range(7), 0, False)
    with pytest.raises(TypeError, match="drop_last must be a bool"):
        BatchSampler(range(7), 2, None)


def test_loader_with_sampler_and_batch_sampler():
    ds = ids_dataset(10)
    loader = DataLoader(ds, batch_size=4, sampler=[9, 1, 1, 4, 0])
    assert epoch_ids(loader) == [[9, 1, 1, 4], [0]] and len(loader) == 2
    loader = DataLoader(ds, batch_sampler=[[3, 2], [7, 8, 9]])
    assert epoch_ids(loader) == [[3, 2], [7, 8, 9]] and len(loader) == 2
    loader = DataLoader(Wrapped(ds), batch_sampler=BatchSampler(range(5), 2, True))
    assert epoch_ids(loader) == [[0, 1], [2, 3]]


def test_default_collate_structures():
    Pair = namedtuple("Pair", "x y")
    batch = [
        {"x": np.full(3, i, np.float32), "y": i, "w": 0.5 * i, "name": f"s{i}", "ok": i % 2 == 0}
        for i in range(4)
    ]
    out = default_collate(batch)
    assert set(out) == {"x", "y", "w", "name", "ok"}
    np.testing.assert_array_equal(out["x"].numpy(), np.repeat(np.arange(4.0), 3).reshape(4, 3))
    assert out["x"].dtype == np.float32
    assert out["y"].dtype == np.int64 and out["y"].tolist() == [0, 1, 2, 3]
    assert out["w"].dtype == np.float64  # Python floats collate to float64, as in PyTorch
    assert out["ok"].dtype == np.bool_ and out["name"] == ["s0", "s1", "s2", "s3"]
    pairs = default_collate([Pair(myelin.tensor([1.0, 2.0]), np.int32(i)) for i in range(3)])
    assert isinstance(pairs, Pair) and pairs.x.shape == (3, 2) and pairs.y.dtype == np.int32
    lists = default_collate([[1, 2.0], [3, 4.0]])
    assert isinstance(lists, list) and lists[0].tolist() == [1, 3]


def test_default_collate_errors():
    with pytest.raises(ValueError, match="different shapes"):
        default_collate([np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="different lengths"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="got NoneType"):
        default_collate([None, None])
    with pytest.raises(ValueError, match="empty"):
        default_collate([])


def test_custom_collate_fn_takes_the_generic_path():
    ds = ids_dataset(6)
    loader = DataLoader(ds, batch_size=4, collate_fn=lambda samples: len(samples))
    assert list(loader) == [4, 2]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ({"batch_size": -3}, ValueError, "got -3"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be a positive int, got 2.5"),
        ({"batch_size": True}, TypeError, "batch_size"),
        ({"batch_size": None}, TypeError, "batch_size"),
        ({"shuffle": "yes"}, TypeError, "shuffle must be a bool"),
        ({"drop_last": 1}, TypeError, "drop_last must be a bool"),
        ({"shuffle": True, "sampler": [0, 1]}, ValueError, "sampler excludes shuffle"),
        ({"batch_sampler": [[0]], "batch_size": 4}, ValueError, "batch_sampler excludes"),
        ({"collate_fn": 3}, TypeError, "collate_fn must be callable"),
        ({"generator": 3}, TypeError, "generator must be a myelin.Generator"),
    ],
)
def test_loader_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(ids_dataset(4), **kwargs)


def test_loader_rejects_a_non_dataset():
    with pytest.raises(TypeError, match="map-style"):
        DataLoader(iter(range(3)))


# ---------------------------------------------------------------- Normalize


def _reference_stats(x):
    mean = x.astype(np.float64).mean(axis=0)
    std = x.astype(np.float64).std(axis=0)  # population std, as StandardScaler
    return mean, np.where(std == 0, 1.0, std)


def test_normalize_matches_numpy_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(200, 6)) * np.arange(1, 7)
    x[:, 2] = 4.0  # a constant feature is only centred
    norm = Normalize()
    z = norm.fit_transform(x)
    mean, std = _reference_stats(x)
    assert isinstance(z, np.ndarray) and z.dtype == np.float64
    eps, n = np.finfo(np.float64).eps, x.shape[0]
    np.testing.assert_allclose(norm.mean_, mean, rtol=n * eps)
    np.testing.assert_allclose(norm.std_, std, rtol=n * eps)
    assert norm.std_[2] == 1.0
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=n * eps * np.abs(z).max())
    np.testing.assert_allclose(np.delete(z.std(axis=0), 2), 1.0, rtol=n * eps)
    np.testing.assert_array_equal(z[:, 2], 0.0)
    back = norm.inverse_transform(z)
    np.testing.assert_array_less(np.abs(back - x), 4 * eps * (np.abs(x) + np.abs(mean)))


def test_normalize_keeps_float32_and_tensors():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(64, 5)) * [1, 10, 100, 0.1, 3] + [0, 50, -7, 1, 2]).astype(np.float32)
    norm = Normalize().fit(myelin.from_numpy(x))
    mean, std = _reference_stats(x)
    ref = (x.astype(np.float64) - mean) / std
    eps = np.finfo(np.float32).eps
    bound = 4 * eps * ((np.abs(x) + np.abs(mean)) / std + np.abs(ref))
    z_t = norm(myelin.from_numpy(x))
    z_a = norm.transform(x)
    assert isinstance(z_t, Tensor) and z_t.dtype == np.float32
    assert isinstance(z_a, np.ndarray) and z_a.dtype == np.float32
    np.testing.assert_array_less(np.abs(z_t.numpy() - ref), bound)
    np.testing.assert_array_equal(z_a, z_t.numpy())
    back = norm.inverse_transform(z_t).numpy()
    assert back.dtype == np.float32
    np.testing.assert_array_less(np.abs(back - x), 8 * eps * (np.abs(x) + np.abs(mean)))
    assert norm.transform(np.arange(10).reshape(2, 5)).dtype == np.float64
    assert norm.transform(myelin.tensor([[1, 2, 3, 4, 5]])).dtype == np.float32


def test_normalize_gradient_is_one_over_std():
    x = myelin.randn(8, 3, dtype=myelin.float64) * 4 + 1
    norm = Normalize().fit(x)
    xg = x.detach().requires_grad_()
    norm(xg).sum().backward()
    np.testing.assert_allclose(xg.grad.numpy(), np.broadcast_to(1.0 / norm.std_, (8, 3)))


def test_normalize_state_dict_round_trip():
    x = np.random.default_rng(2).normal(size=(30, 4))
    a = Normalize().fit(x)
    b = Normalize()
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.transform(x), a.transform(x))
    state = a.state_dict()
    state["mean"][:] = 99.0  # a copy: the fitted statistics are untouched
    assert not np.any(a.mean_ == 99.0)


def test_normalize_errors():
    norm = Normalize()
    with pytest.raises(RuntimeError, match="not fitted"):
        norm.transform(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        norm.state_dict()
    norm.fit(np.ones((5, 10)))
    with pytest.raises(ValueError, match="10 features.*7 features"):
        norm.transform(np.zeros((4, 7)))
    with pytest.raises(ValueError, match="no samples"):
        Normalize().fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="scalar"):
        Normalize().fit(np.float64(1.0))
    with pytest.raises(ValueError, match="keys"):
        norm.load_state_dict({"mean": np.zeros(3)})
    with pytest.raises(ValueError, match="positive"):
        norm.load_state_dict({"mean": np.zeros(3), "std": np.zeros(3)})


def test_pytorch_worker_options_are_accepted():
    ds = TensorDataset(np.arange(10.0).reshape(5, 2), np.arange(5))
    loader = DataLoader(ds, batch_size=2, num_workers=2, pin_memory=True)
    assert sum(len(b[1]) for b in loader) == 5
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
