"""Type stub of the Cython bindings (_kernels.pyx): what mypy sees of the compiled module.

Arrays are float32 or float64 ndarrays of one dtype per call; outputs come first, as in the C API.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[Any]

ACT_NONE: int
ACT_RELU: int
ACT_LEAKY_RELU: int
ACT_SIGMOID: int
ACT_TANH: int

def select_isa(name: str) -> int: ...
def isa_supported(isa: int) -> bool: ...
def current_isa() -> int: ...
def isa_name(isa: int) -> str: ...
def has_openmp() -> bool: ...
def openmp_version() -> int: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def fma_peak_gflops(threads: int, seconds: float) -> float: ...
def gemm(
    out: _Array,
    a: _Array,
    b: _Array,
    beta: float = 0.0,
    bias: _Array | None = None,
    act: int = 0,
    slope: float = 0.01,
) -> _Array: ...
def gemm_batched(out: _Array, a: _Array, b: _Array) -> _Array: ...
def act_forward(y: _Array, x: _Array, act: int, slope: float) -> _Array: ...
def act_backward(dx: _Array, dy: _Array, y: _Array, act: int, slope: float) -> _Array: ...
def softmax_forward(y: _Array, x: _Array, rows: int, cols: int, log: bool) -> _Array: ...
def softmax_backward(
    dx: _Array, dy: _Array, y: _Array, rows: int, cols: int, log: bool
) -> _Array: ...
def prepare_labels(
    labels: _Array, n_classes: int, ignore_index: int | None
) -> tuple[NDArray[np.int64], int, int]: ...
def softmax_xent(
    row_loss: _Array | None,
    dlogits: _Array | None,
    logits: _Array,
    labels: _Array,
    label_smoothing: float,
    grad_scale: float,
) -> float: ...
def pointwise_loss(
    kind: int,
    elem_loss: _Array | None,
    dx: _Array | None,
    x: _Array,
    t: _Array,
    grad_scale: float,
) -> float: ...
def colsum(out: _Array, x: _Array, rows: int, cols: int, beta: float = 0.0) -> _Array: ...
def sumsq(x: _Array) -> float: ...
def sgd_step(
    p: _Array,
    buf: _Array | None,
    g: _Array,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    first_step: bool,
) -> None: ...
def adam_step(
    p: _Array,
    m: _Array,
    v: _Array,
    vmax: _Array | None,
    g: _Array,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    step: int,
) -> None: ...
def rmsprop_step(
    p: _Array,
    sq: _Array,
    buf: _Array | None,
    gavg: _Array | None,
    g: _Array,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
) -> None: ...
def matmul_fast(a: Any, b: Any, trans_a: bool, trans_b: bool) -> _Array | None: ...
def linear_fast(
    x: Any,
    w: Any,
    bias: Any,
    activation: str | None,
    negative_slope: float | None,
    out: _Array | None = None,
) -> _Array | None: ...
def linear_backward_fast(
    grad_y: Any,
    x: Any,
    w: Any,
    y: Any,
    activation: str | None,
    negative_slope: float | None,
    need_grad_x: bool,
    out_x: _Array | None = None,
    out_w: _Array | None = None,
    out_b: _Array | None = None,
    work: Any = None,
) -> tuple[_Array | None, _Array, _Array | None] | None: ...
def adam_multi(
    params: Sequence[_Array],
    grads: Sequence[_Array],
    exp_avgs: Sequence[_Array],
    exp_avg_sqs: Sequence[_Array],
    max_exp_avg_sqs: Sequence[_Array] | None,
    steps: Sequence[int],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
) -> None: ...
def sgd_multi(
    params: Sequence[_Array],
    grads: Sequence[_Array],
    bufs: Sequence[_Array | None] | None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    first_steps: Sequence[bool],
) -> None: ...
def softmax_xent_fast(
    logits: Any, labels: Any, ignore_index: int | None, label_smoothing: Any, mean: bool
) -> tuple[float, _Array] | None: ...
def chain_forward_fast(
    x: Any,
    weights: Sequence[Any],
    biases: Sequence[Any],
    activations: Sequence[str | None],
    slopes: Sequence[float | None],
    pool_from: int,
) -> list[_Array] | None: ...
def chain_backward_fast(
    g: Any,
    outs: Sequence[_Array],
    weights: Sequence[Any],
    activations: Sequence[str | None],
    slopes: Sequence[float | None],
    need_input_grad: bool,
) -> list[_Array | None] | None: ...
def sumsq_fast(arrays: Any) -> float | None: ...
def read_apart(a: _Array, written: tuple[_Array | None, ...], in_place: bool = False) -> _Array: ...

# Bindings added after this stub was written are typed Any rather than rejected.
def __getattr__(name: str) -> Any: ...
