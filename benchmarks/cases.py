"""The cases of the suite: for each, the same computation in myelin, NumPy and PyTorch.

A case factory builds its inputs once and returns a :class:`Case`: the functions to time (one per
system, all on the same inputs), the work one call does (flops, bytes or samples), the issue's
target row it belongs to, a ``verify`` that runs each system once and measures how far its result
is from the NumPy one, and, for training steps, the steps whose allocations are counted.

Systems: ``myelin``; ``numpy`` (plain ``a @ b`` for GEMMs, ``myelin.reference`` otherwise, or
scikit-learn's MLPClassifier for the digits fit); ``torch`` where PyTorch is importable; ``copy``
(``np.copyto`` of the same size) for ReLU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

import myelin
from myelin import nn, ops, reference

NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class Mode:
    """How hard to measure. ``smoke`` shrinks every case to a toy size (a run that only shows the
    suite works); the others time the issue's sizes."""

    name: str
    rounds: int
    settle: float
    block: float
    peak_seconds: float
    smoke: bool = False
    fit_rounds: int = 3  # rounds a whole fit takes part in (spread over the run)
    warmup: bool = True


MODES = {
    "smoke": Mode(
        "smoke", rounds=1, settle=0.0, block=0.0, peak_seconds=0.05, smoke=True, warmup=False
    ),
    "quick": Mode("quick", rounds=5, settle=0.25, block=0.02, peak_seconds=0.3),
    "full": Mode("full", rounds=15, settle=0.25, block=0.03, peak_seconds=1.0),
}


@dataclass
class Case:
    """One row of the table: what each system runs, and what the row is measured against.

    ``fns`` maps a system name to a function of no arguments doing one call of the computation;
    ``work`` is what one call does in ``unit`` (flops for GFLOP/s, bytes moved for GB/s, samples
    for samples/s); ``group`` names the issue's target row (None: no target); ``missing`` maps a
    system that could not run to the reason.
    """

    key: str
    label: str  # short name for the chart, after the issue's
    op: str
    shape: str
    dtype: str
    group: str | None
    fns: dict
    work: float
    unit: str  # "GFLOP/s", "GB/s" or "samples/s"
    gemm: bool = False
    flops: float | None = None  # for training steps: the arithmetic of one step
    baseline_label: str = "numpy"
    missing: dict = field(default_factory=dict)
    verify: object = None  # () -> {system: relative max abs difference from numpy}
    alloc_steps: dict = field(default_factory=dict)  # system -> one training step
    accuracy: dict = field(default_factory=dict)  # system -> list of test accuracies (fits)
    unavailable: str | None = None  # the whole row could not run (e.g. scikit-learn missing)


# ---------------------------------------------------------------- optional peers

_TORCH = None


def torch_module():
    """PyTorch, or None when it is not installed (imported once)."""
    global _TORCH
    if _TORCH is None:
        try:
            import torch
        except ImportError:
            _TORCH = False
        else:
            _TORCH = torch
    return _TORCH or None


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def _with_torch(case: Case, add) -> Case:
    """Add PyTorch's function(s) with ``add(torch)``, or mark the column "not installed"."""
    torch = torch_module()
    if torch is None:
        case.missing["torch"] = NOT_INSTALLED
    else:
        add(torch)
    return case


# ---------------------------------------------------------------- helpers


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _normal(rng, shape, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _array(x) -> np.ndarray:
    """An output of any system as an ndarray (torch tensors detached, scalars as 0-d)."""
    if hasattr(x, "detach"):
        x = x.detach().numpy()
    return np.asarray(x, dtype=np.float64)


def rel_diff(x, ref) -> float:
    """max |x - ref| / max |ref| (or the absolute difference where ref is all zeros)."""
    x, ref = _array(x), _array(ref)
    if x.shape != ref.shape:
        return float("inf")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = float(np.max(np.abs(x - ref))) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


def _diffs_of(outputs: dict) -> dict:
    """{system: rel_diff(output, numpy's output)} for every system but numpy; outputs may be
    tuples (compared element by element, the largest difference kept)."""
    ref = outputs["numpy"]
    result = {}
    for name, out in outputs.items():
        if name == "numpy":
            continue
        if isinstance(ref, (tuple, list)):
            result[name] = max(rel_diff(o, r) for o, r in zip(out, ref, strict=True))
        else:
            result[name] = rel_diff(out, ref)
    return result


def _verify_outputs(fns: dict):
    """A verify that calls each function once and compares what it returns."""
    return lambda: _diffs_of({name: fn() for name, fn in fns.items() if name != "copy"})


# ---------------------------------------------------------------- GEMM


def gemm(n: int, dtype=np.float32, mode: Mode | None = None) -> Case:
    """Square GEMM ``a @ b``, n x n x n, each library allocating its result."""
    size = min(n, 24) if mode is not None and mode.smoke else n
    rng = _rng()
    a, b = _normal(rng, (size, size), dtype), _normal(rng, (size, size), dtype)
    name = np.dtype(dtype).name
    if name == "float64":
        group = "square GEMM 1024 float64" if n == 1024 else None
    elif n >= 1024:
        group = "square GEMM 1024-2048"
    elif n <= 256:
        group = "square GEMM 64-256"
    else:
        group = None  # the issue sets no target for 512
    fns = {"myelin": lambda: ops.matmul(a, b), "numpy": lambda: a @ b}
    case = Case(
        key=f"gemm-{n}" + ("-f64" if name == "float64" else ""),
        label=f"GEMM {n} {name}",
        op="matmul a @ b",
        shape=f"{size}x{size}x{size}",
        dtype=name,
        group=group,
        fns=fns,
        work=2.0 * size**3,
        unit="GFLOP/s",
        gemm=True,
    )

    def add(torch):
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns["torch"] = lambda: ta @ tb

    _with_torch(case, add)
    case.verify = _verify_outputs(fns)
    return case


_LAYER = {  # which GEMM of the layer, as an expression
    "forward": "y = x @ W.T",
    "grad_weight": "dW = g.T @ x",
    "grad_input": "dx = g @ W",
}


def mlp_layer(which: str, mode: Mode | None = None) -> Case:
    """One GEMM of a Linear(784, 512) layer at batch 128; W is (512, 784) as PyTorch stores it."""
    batch, fin, fout = (8, 24, 16) if mode is not None and mode.smoke else (128, 784, 512)
    rng = _rng()
    x, w, g = _normal(rng, (batch, fin)), _normal(rng, (fout, fin)), _normal(rng, (batch, fout))
    if which == "forward":
        f_m, f_n = (lambda: ops.matmul(x, w, trans_b=True)), (lambda: x @ w.T)
        shape = f"{batch}x{fin} @ ({fout}x{fin}).T"
    elif which == "grad_weight":
        f_m, f_n = (lambda: ops.matmul(g, x, trans_a=True)), (lambda: g.T @ x)
        shape = f"({batch}x{fout}).T @ {batch}x{fin}"
    elif which == "grad_input":
        f_m, f_n = (lambda: ops.matmul(g, w)), (lambda: g @ w)
        shape = f"{batch}x{fout} @ {fout}x{fin}"
    else:
        raise ValueError(f"which must be forward, grad_weight or grad_input, got {which!r}")
    fns = {"myelin": f_m, "numpy": f_n}
    case = Case(
        key=f"mlp-layer-{which}",
        label=f"MLP layer {which}",
        op=f"MLP layer {_LAYER[which]}",
        shape=shape,
        dtype="float32",
        group="MLP-layer GEMMs, every transpose",
        fns=fns,
        work=2.0 * batch * fin * fout,
        unit="GFLOP/s",
        gemm=True,
    )

    def add(torch):
        tx, tw, tg = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)
        fns["torch"] = {
            "forward": lambda: tx @ tw.T,
            "grad_weight": lambda: tg.T @ tx,
            "grad_input": lambda: tg @ tw,
        }[which]

    _with_torch(case, add)
    case.verify = _verify_outputs(fns)
    return case


def batched(mode: Mode | None = None) -> Case:
    """1000 independent 32x32 @ 32x32 products."""
    count, n = (10, 8) if mode is not None and mode.smoke else (1000, 32)
    rng = _rng()
    a, b = _normal(rng, (count, n, n)), _normal(rng, (count, n, n))
    fns = {"myelin": lambda: ops.matmul(a, b), "numpy": lambda: a @ b}
    case = Case(
        key="batched-gemm",
        label="batched 1000x32x32",
        op="batched matmul a @ b",
        shape=f"{count}x({n}x{n} @ {n}x{n})",
        dtype="float32",
        group="batched 1000×32×32",
        fns=fns,
        work=2.0 * count * n**3,
        unit="GFLOP/s",
        gemm=True,
    )

    def add(torch):
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns["torch"] = lambda: ta @ tb

    _with_torch(case, add)
    case.verify = _verify_outputs(fns)
    return case


# ---------------------------------------------------------------- memory-bound kernels


def softmax_xent(mode: Mode | None = None) -> Case:
    """Softmax cross-entropy, mean loss and its gradient with respect to the logits."""
    n, c = (64, 10) if mode is not None and mode.smoke else (4096, 1000)
    rng = _rng()
    logits = _normal(rng, (n, c))
    labels = rng.integers(0, c, n)
    fns = {
        "myelin": lambda: ops.softmax_cross_entropy(logits, labels),
        "numpy": lambda: reference.softmax_cross_entropy(logits, labels),
    }
    case = Case(
        key="softmax-xent",
        label="softmax xent 4096x1000",
        op="softmax cross-entropy fwd+bwd",
        shape=f"{n}x{c}",
        dtype="float32",
        group="softmax cross-entropy fwd+bwd 4096×1000",
        fns=fns,
        work=2.0 * logits.nbytes,  # read the logits, write the gradient
        unit="GB/s",
    )

    def add(torch):
        tl = torch.from_numpy(logits.copy()).requires_grad_()
        ty = torch.from_numpy(labels)
        cross_entropy = torch.nn.functional.cross_entropy

        def torch_xent():
            tl.grad = None
            loss = cross_entropy(tl, ty)
            loss.backward()
            return loss, tl.grad

        fns["torch"] = torch_xent

    _with_torch(case, add)
    case.verify = _verify_outputs(fns)
    return case


def relu(mode: Mode | None = None) -> Case:
    """ReLU on 16M floats into a preallocated output, beside a copy of the same size."""
    n = 4096 if mode is not None and mode.smoke else 1 << 24
    x = _normal(_rng(), n)
    y = np.empty_like(x)
    fns = {
        "myelin": lambda: ops.relu(x, out=y),
        "numpy": lambda: reference.relu(x, out=y),
        "copy": lambda: np.copyto(y, x),
    }
    case = Case(
        key="relu",
        label="ReLU 16M",
        op="relu(x, out=y)",
        shape=f"{n // (1 << 20)}M" if n >= 1 << 20 else str(n),
        dtype="float32",
        group="ReLU 16M",
        fns=fns,
        work=2.0 * x.nbytes,
        unit="GB/s",
    )

    def add(torch):
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        fns["torch"] = lambda: torch.clamp(tx, min=0.0, out=ty)

    _with_torch(case, add)

    def verify():
        outs = {}
        for name in ("numpy", "myelin", "torch"):
            if name in fns:
                y.fill(np.nan)
                fns[name]()
                outs[name] = y.copy()
        return _diffs_of(outs)

    case.verify = verify
    return case


def adam(mode: Mode | None = None) -> Case:
    """One Adam step (lr 1e-3, PyTorch's defaults) on 6M parameters, in place."""
    n = 4096 if mode is not None and mode.smoke else 6_000_000
    rng = _rng()
    # parameters of the size initialisers give (~0.01), so one update (~lr) is not lost in
    # their rounding when verify compares the updates of different systems
    p0, g0 = 0.01 * _normal(rng, n), _normal(rng, n)

    def fresh():
        return [p0.copy(), g0.copy(), np.zeros_like(p0), np.zeros_like(p0), [0]]

    def ops_step(state):
        p, g, m, v, t = state
        t[0] += 1
        ops.adam_step(p, g, m, v, step=t[0])

    def ref_step(state):
        p, g, m, v, t = state
        t[0] += 1
        reference.adam_step(p, g, m, v, step=t[0])

    timed = {"myelin": fresh(), "numpy": fresh()}
    fns = {"myelin": lambda: ops_step(timed["myelin"]), "numpy": lambda: ref_step(timed["numpy"])}
    case = Case(
        key="adam",
        label="Adam 6M",
        op="Adam step",
        shape=f"{n / 1e6:g}M params" if n >= 1_000_000 else f"{n} params",
        dtype="float32",
        group="Adam step, 6M params",
        fns=fns,
        work=7.0 * p0.nbytes,  # read p, g, m, v; write p, m, v
        unit="GB/s",
    )

    def torch_adam(torch):
        param = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        param.grad = torch.from_numpy(g0.copy())
        return param, torch.optim.Adam([param], lr=1e-3)

    def add(torch):
        _, opt = torch_adam(torch)
        fns["torch"] = opt.step

    _with_torch(case, add)

    def verify(steps: int = 3):
        # Compare the updates p - p0 after a few steps from the same state: the parameters
        # themselves are ~1 and would hide an update (~1e-3) that is wrong.
        states = {"myelin": fresh(), "numpy": fresh()}
        for _ in range(steps):
            ops_step(states["myelin"])
            ref_step(states["numpy"])
        deltas = {name: s[0] - p0 for name, s in states.items()}
        torch = torch_module()
        if torch is not None:
            param, opt = torch_adam(torch)
            for _ in range(steps):
                opt.step()
            deltas["torch"] = param.detach().numpy() - p0
        return _diffs_of(deltas)

    case.verify = verify
    return case


# ---------------------------------------------------------------- training steps


class _ReferenceMLP:
    """A plain-NumPy MLP training step from ``myelin.reference``: linear (ReLU fused) layers,
    softmax cross-entropy, linear_backward, Adam (lr 1e-3)."""

    def __init__(self, state: dict, n_layers: int) -> None:
        self.weights = [state[f"{2 * i}.weight"].copy() for i in range(n_layers)]
        self.biases = [state[f"{2 * i}.bias"].copy() for i in range(n_layers)]
        self.params = [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]
        self.exp_avg = [np.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def loss_and_grads(self, x, y):
        last = len(self.weights) - 1
        acts = [x]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            acts.append(reference.linear(acts[-1], w, b, "relu" if i < last else None))
        loss, g = reference.softmax_cross_entropy(acts[-1], y)
        grads = [None] * len(self.params)
        for i in range(last, -1, -1):
            g, grads[2 * i], grads[2 * i + 1] = reference.linear_backward(
                g,
                acts[i],
                self.weights[i],
                acts[i + 1],
                "relu" if i < last else None,
                need_grad_x=i > 0,
            )
        return loss, grads

    def step(self, x, y):
        loss, grads = self.loss_and_grads(x, y)
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            reference.adam_step(p, g, m, v, step=self.t, lr=1e-3)
        return loss


def _myelin_mlp(sizes):
    layers = []
    for i, (fin, fout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fin, fout))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _torch_mlp(torch, sizes, state):
    layers = []
    for i, (fin, fout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(torch.nn.Linear(fin, fout))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return model


_TRAIN_GROUPS = {
    (10, 64, 32, 2): "train step 10-64-32-2 b16",
    (784, 512, 256, 10): "train step 784-512-256-10 b128",
    (1024, 2048, 2048, 10): "train step 1024-2048-2048-10 b256",
}


def train_step(sizes: tuple, batch: int, mode: Mode | None = None) -> Case:
    """One training step of an MLP (Linear+ReLU ..., Linear), cross-entropy, Adam lr 1e-3:
    myelin's framework with the PyTorch-style four-line loop body, the plain-NumPy reference
    step, and PyTorch's nn + optim; all from the same initial weights on the same batch."""
    group = _TRAIN_GROUPS[tuple(sizes)]
    run_sizes, run_batch = tuple(sizes), batch
    if mode is not None and mode.smoke and max(sizes) > 64:
        run_sizes, run_batch = (24, 32, 16, 10), 8
    rng = _rng()
    x = _normal(rng, (run_batch, run_sizes[0]))
    y = rng.integers(0, run_sizes[-1], run_batch)
    myelin.manual_seed(0)
    model = _myelin_mlp(run_sizes)
    state = model.state_dict()
    optimizer = myelin.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    xm, ym = myelin.from_numpy(x), myelin.from_numpy(y)

    def myelin_step():
        optimizer.zero_grad()
        loss = criterion(model(xm), ym)
        loss.backward()
        optimizer.step()

    ref = _ReferenceMLP(state, len(run_sizes) - 1)
    fns = {"myelin": myelin_step, "numpy": lambda: ref.step(x, y)}
    n_weights = sum(a * b for a, b in zip(run_sizes[:-1], run_sizes[1:], strict=True))
    case = Case(
        key="train-" + "-".join(map(str, sizes)),
        label=f"train {'-'.join(map(str, sizes))} b{batch}",
        op="train step " + "-".join(map(str, sizes)),
        shape=f"{'-'.join(map(str, run_sizes))} batch {run_batch}",
        dtype="float32",
        group=group,
        fns=fns,
        work=float(run_batch),
        unit="samples/s",
        flops=6.0 * run_batch * n_weights,  # forward 2, backward 4 per weight and sample
        alloc_steps={"myelin": myelin_step, "numpy": lambda: ref.step(x, y)},
    )

    torch_parts = {}

    def add(torch):
        tmodel = _torch_mlp(torch, run_sizes, state)
        topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        tcrit = torch.nn.CrossEntropyLoss()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step():
            topt.zero_grad()
            loss = tcrit(tmodel(tx), ty)
            loss.backward()
            topt.step()

        fns["torch"] = torch_step
        torch_parts.update(model=tmodel, crit=tcrit, x=tx, y=ty)

    _with_torch(case, add)

    def verify():
        # Loss and every gradient of one forward+backward from the starting weights (before any
        # timed step changes them); Adam's update is checked by its own case.
        optimizer.zero_grad()
        loss = criterion(model(xm), ym)
        loss.backward()
        outs = {"myelin": (loss.item(), *[p.grad.numpy() for p in model.parameters()])}
        ref_loss, ref_grads = ref.loss_and_grads(x, y)
        outs["numpy"] = (ref_loss, *ref_grads)
        if torch_parts:
            tmodel = torch_parts["model"]
            tmodel.zero_grad()
            tloss = torch_parts["crit"](tmodel(torch_parts["x"]), torch_parts["y"])
            tloss.backward()
            outs["torch"] = (tloss.item(), *[p.grad for p in tmodel.parameters()])
        optimizer.zero_grad()
        return _diffs_of(outs)

    case.verify = verify
    return case


def thread_scaling(mode: Mode | None = None) -> Case:
    """A 784-64-10 training step at batch 32 on all of myelin's threads against the same step
    on one thread (issue 5: thread count follows the work, so more threads never make a small
    step slower). Each call runs on its thread count, then sets the count back."""
    sizes, batch = (784, 64, 10), 32
    if mode is not None and mode.smoke:
        sizes, batch = (24, 16, 10), 8
    rng = _rng()
    x = myelin.from_numpy(_normal(rng, (batch, sizes[0])))
    y = myelin.from_numpy(rng.integers(0, sizes[-1], batch))
    myelin.manual_seed(0)
    model = _myelin_mlp(sizes)
    optimizer = myelin.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    threads = myelin.get_num_threads()

    def step():
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()

    # each call leaves the thread count as it found it: the other cases run in between
    def on(n):
        myelin.set_num_threads(n)
        try:
            step()
        finally:
            myelin.set_num_threads(threads)

    case = Case(
        key="threads-784-64-10",
        label="784-64-10 b32 threads",
        op=f"train step on {threads} threads vs 1",
        shape=f"{'-'.join(map(str, sizes))} batch {batch}",
        dtype="float32",
        group="train step 784-64-10 b32, threads",
        fns={"myelin": lambda: on(threads), "1 thread": lambda: on(1)},
        work=float(batch),
        unit="samples/s",
        baseline_label="1 thread",
    )
    return case


# ---------------------------------------------------------------- a whole fit


def _digits_data():
    """scikit-learn's digits, split 1347/450 (random_state 0), standardised with the training
    set's mean and standard deviation (constant pixels left at 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0)
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)
    std[std == 0] = 1.0
    xtr = ((xtr - mean) / std).astype(np.float32)
    xte = ((xte - mean) / std).astype(np.float32)
    return xtr, xte, ytr.astype(np.int64), yte.astype(np.int64)


def digits_fit(mode: Mode | None = None) -> Case:
    """A whole fit of a 64-128-64-10 MLP on digits: Adam lr 1e-3, batch 32, 30 epochs, each
    system from its own initialisation; the time includes building the model and scoring it on
    the 450 test images."""
    epochs = 1 if mode is not None and mode.smoke else 30
    case = Case(
        key="digits-fit",
        label="digits fit 30 epochs",
        op="digits fit 64-128-64-10",
        shape=f"{epochs} epochs, batch 32",
        dtype="float32",
        group="digits fit, 30 epochs",
        fns={},
        work=0.0,
        unit="samples/s",
        baseline_label="sklearn",
    )
    if not _sklearn():
        case.unavailable = "scikit-learn " + NOT_INSTALLED
        case.missing["sklearn"] = NOT_INSTALLED
        return case
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    xtr, xte, ytr, yte = _digits_data()
    if mode is not None and mode.smoke:
        xtr, ytr = xtr[:256], ytr[:256]
    case.work = float(epochs * len(xtr))
    case.shape = f"{len(xtr)}/{len(xte)} images, {epochs} epochs, batch 32"
    accuracy = case.accuracy

    def myelin_fit():
        myelin.manual_seed(0)
        model = _myelin_mlp((64, 128, 64, 10))
        model.compile("adam", loss="sparse_categorical_crossentropy")
        model.fit(xtr, ytr, epochs=epochs, batch_size=32, verbose=0)
        acc = float(np.mean(model.predict(xte, batch_size=len(xte)).argmax(1) == yte))
        accuracy.setdefault("myelin", []).append(acc)

    def sklearn_fit():
        clf = MLPClassifier(
            hidden_layer_sizes=(128, 64),
            batch_size=32,
            learning_rate_init=1e-3,
            max_iter=epochs,
            random_state=0,
            tol=0,
            n_iter_no_change=10**9,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(xtr, ytr)
        accuracy.setdefault("sklearn", []).append(float(clf.score(xte, yte)))

    case.fns.update(myelin=myelin_fit, sklearn=sklearn_fit)

    def add(torch):
        xtr_t, ytr_t, xte_t = torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte)

        def torch_fit():
            torch.manual_seed(0)
            model = torch.nn.Sequential(
                torch.nn.Linear(64, 128),
                torch.nn.ReLU(),
                torch.nn.Linear(128, 64),
                torch.nn.ReLU(),
                torch.nn.Linear(64, 10),
            )
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            crit = torch.nn.CrossEntropyLoss()
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(xtr_t, ytr_t), batch_size=32, shuffle=True
            )
            for _ in range(epochs):
                for xb, yb in loader:
                    opt.zero_grad()
                    loss = crit(model(xb), yb)
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                pred = model(xte_t).argmax(1).numpy()
            accuracy.setdefault("torch", []).append(float(np.mean(pred == yte)))

        case.fns["torch"] = torch_fit

    return _with_torch(case, add)


# ---------------------------------------------------------------- the lists


def _gemm_cases(sizes, dtype=np.float32):
    return [lambda mode, n=n: gemm(n, dtype, mode) for n in sizes]


def _layers(which):
    return [lambda mode, w=w: mlp_layer(w, mode) for w in which]


SMALL_STEP = lambda mode: train_step((10, 64, 32, 2), 16, mode)
MIDDLE_STEP = lambda mode: train_step((784, 512, 256, 10), 128, mode)
LARGE_STEP = lambda mode: train_step((1024, 2048, 2048, 10), 256, mode)

FULL = [
    *_gemm_cases((64, 128, 256, 512, 1024, 2048)),
    *_gemm_cases((1024,), np.float64),
    *_layers(("forward", "grad_weight", "grad_input")),
    batched,
    softmax_xent,
    relu,
    adam,
    SMALL_STEP,
    MIDDLE_STEP,
    LARGE_STEP,
    thread_scaling,
    digits_fit,
]

QUICK = [
    *_gemm_cases((128, 1024)),
    *_layers(("forward",)),
    softmax_xent,
    relu,
    adam,
    SMALL_STEP,
    MIDDLE_STEP,
]


def cases_for(mode: Mode) -> list:
    """The case factories a mode runs: every case for ``full`` and ``smoke``, a subset for
    ``quick``."""
    return QUICK if mode.name == "quick" else FULL
