"""scikit-learn estimators on myelin: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in counterparts of ``sklearn.neural_network.MLPClassifier``/``MLPRegressor``
(https://scikit-learn.org/stable/modules/neural_networks_supervised.html) with the same
hyper-parameters, defaults, stopping rule and fitted attributes (``coefs_``, ``intercepts_``,
``loss_``, ``loss_curve_``, ``n_iter_``, ...), trained by myelin's kernels: the layers run as
one :func:`myelin.nn.functional.linear_chain` (fused GEMM + activation per layer) and
:class:`myelin.optim.Adam` or :class:`myelin.optim.SGD` update them. They work in pipelines,
cross-validation and grid search, and pass ``sklearn.utils.estimator_checks.check_estimator``.

Needs scikit-learn (``pip install scikit-learn``); ``import myelin`` does not import it.

>>> from myelin.sklearn import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(32,), random_state=0).fit(X, y)
>>> clf.predict_proba(X[:3])

Differences from scikit-learn: the ``"lbfgs"`` solver is not offered, nor ``sample_weight``;
the network computes in float64 whatever the input dtype.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "myelin.sklearn needs scikit-learn >= 1.6; install it with: pip install scikit-learn"
    ) from exc

from myelin import nn, optim
from myelin._autograd import no_grad
from myelin.nn import functional as F
from myelin.tensor import Tensor

__all__ = ["MLPClassifier", "MLPRegressor"]

# sklearn's activation names -> the epilogue of myelin's fused Linear
_ACTIVATIONS = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SOLVERS = ("adam", "sgd")
_SCHEDULES = ("constant", "invscaling", "adaptive")


def _check_param(owner: str, name: str, value, kind: str, low=None, high=None, low_open=False):
    """Raise a clear TypeError/ValueError unless ``value`` is a number of ``kind`` in range."""
    if kind == "int":
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok:
        raise TypeError(f"{owner}: {name} must be {kind}, got {value!r}")
    if (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and value > high)
        or (kind == "float" and not math.isfinite(value))
    ):
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        raise ValueError(
            f"{owner}: {name} must be {' and '.join(filter(None, [lo, hi]))}, got {value!r}"
        )


def _check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")


def _set_lr(opt, old: float, new: float) -> float:
    """Change SGD's step size from ``old`` to ``new`` as sklearn does: its velocity holds the past
    steps (``v = momentum * v - lr * g``) where myelin's buffer holds past gradients (``p -= lr *
    buf``), so the buffer is rescaled to keep the past steps' length."""
    for group in opt.param_groups:
        group["lr"] = new
    for state in opt.state.values():
        buf = state.get("momentum_buffer")
        if buf is not None:
            buf *= old / new
    return new


class _BaseMLP(BaseEstimator):
    """The training loop shared by the classifier and the regressor (sklearn's
    ``BaseMultilayerPerceptron`` semantics on myelin's modules and optimizers)."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change

    # ------------------------------------------------------------ hooks of the subclasses

    def _encode_targets(self, y, first: bool, classes=None) -> np.ndarray:
        raise NotImplementedError

    def _loss(self, out: Tensor, t: np.ndarray) -> Tensor:
        raise NotImplementedError

    def _loss_scale(self, t: np.ndarray) -> float:
        """The factor from the loss that is differentiated to the loss that is reported."""
        return 1.0

    def _strata(self, t: np.ndarray):
        """What early_stopping's validation split is stratified on (None: not stratified)."""
        return None

    # ------------------------------------------------------------ validation

    def _validate_params(self) -> tuple:
        owner = type(self).__name__
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(
                f"{owner}: hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}"
            ) from None
        for s in sizes:
            _check_param(owner, "hidden_layer_sizes", s, "int", 1)
        _check_choice(owner, "activation", self.activation, _ACTIVATIONS)
        _check_choice(owner, "solver", self.solver, _SOLVERS)
        _check_choice(owner, "learning_rate", self.learning_rate, _SCHEDULES)
        _check_param(owner, "alpha", self.alpha, "float", 0.0)
        if self.batch_size != "auto":
            _check_param(owner, "batch_size", self.batch_size, "int", 1)
        _check_param(owner, "learning_rate_init", self.learning_rate_init, "float", 0.0, None, True)
        _check_param(owner, "power_t", self.power_t, "float", 0.0)
        _check_param(owner, "max_iter", self.max_iter, "int", 1)
        _check_param(owner, "tol", self.tol, "float", 0.0)
        _check_param(owner, "momentum", self.momentum, "float", 0.0, 1.0)
        _check_param(owner, "validation_fraction", self.validation_fraction, "float", 0.0, 1.0)
        if self.early_stopping and not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"{owner}: validation_fraction must be in (0, 1) with early_stopping, "
                f"got {self.validation_fraction!r}"
            )
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            _check_param(owner, name, value, "float", 0.0)
            if value >= 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")
        _check_param(owner, "epsilon", self.epsilon, "float", 0.0, None, True)
        _check_param(owner, "n_iter_no_change", self.n_iter_no_change, "int", 1)
        return tuple(int(s) for s in sizes)

    # ------------------------------------------------------------ the network

    def _build(self, n_in: int, sizes: tuple, n_out: int, rng) -> None:
        """A new network with sklearn's Glorot initialisation, drawn from ``rng``."""
        widths = [n_in, *sizes, n_out]
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            bound = math.sqrt((2.0 if self.activation == "logistic" else 6.0) / (fan_in + fan_out))
            self.coefs_.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            self.intercepts_.append(rng.uniform(-bound, bound, fan_out))
        self.n_layers_ = len(widths)
        self.n_outputs_ = n_out

    def _layers(self, params: list) -> list:
        """``linear_chain`` layers ``(weight, bias, activation, negative_slope)`` over the
        (out, in) weights and the biases in ``params``."""
        act = _ACTIVATIONS[self.activation]
        last = len(params) // 2 - 1
        return [
            (params[2 * i], params[2 * i + 1], None if i == last else act, 0.01)
            for i in range(last + 1)
        ]

    def _forward(self, X: np.ndarray) -> np.ndarray:
        """The output layer's values (logits or regression outputs) for ``X``, float64."""
        params = []
        for w, b in zip(self.coefs_, self.intercepts_, strict=True):
            params += [Tensor(np.ascontiguousarray(w.T)), Tensor(b)]
        with no_grad():
            return F.linear_chain(Tensor(X), self._layers(params))._data

    # ------------------------------------------------------------ fit

    def _fit(self, X, y, incremental: bool = False, classes=None):
        sizes = self._validate_params()
        if incremental and self.early_stopping:
            raise ValueError(f"{type(self).__name__}: partial_fit does not support early_stopping")
        first = not hasattr(self, "coefs_") or not (self.warm_start or incremental)
        X, y = validate_data(
            self,
            X,
            y,
            reset=first,
            dtype=np.float64,
            multi_output=True,
            y_numeric=not isinstance(self, ClassifierMixin),
        )
        t = self._encode_targets(y, first, classes)
        n_out = t.shape[1] if t.ndim == 2 else len(self.classes_)
        rng = check_random_state(self.random_state)  # anew each call, as sklearn
        if first:
            self._build(X.shape[1], sizes, n_out, rng)
            self._optimizer_state: tuple | None = None
            self.t_ = 0
            self.loss_curve_: list[float] = []
            self.best_loss_ = np.inf
            self._no_improvement_count = 0
            self.validation_scores_: list[float] | None
            self.best_validation_score_: float | None
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
            else:
                self.validation_scores_ = None
                self.best_validation_score_ = None
        elif self.n_outputs_ != n_out:
            raise ValueError(
                f"{type(self).__name__}: {n_out} outputs, but the fitted network has "
                f"{self.n_outputs_}"
            )
        self._train(X, y, t, rng, incremental)
        return self

    def _train(self, X: np.ndarray, y, t: np.ndarray, rng, incremental: bool) -> None:
        # the network's parameters: weights as Linear's (out, in), written back to coefs_ after
        params = []
        for w, b in zip(self.coefs_, self.intercepts_, strict=True):
            params += [nn.Parameter(np.ascontiguousarray(w.T)), nn.Parameter(b.copy())]
        weights = params[0::2]
        layers = self._layers(params)
        workspace = F.Workspace()
        opt: optim.Optimizer
        if self.solver == "adam":
            opt = optim.Adam(
                params,
                lr=self.learning_rate_init,
                betas=(self.beta_1, self.beta_2),
                eps=self.epsilon,
            )
        else:
            opt = optim.SGD(
                params,
                lr=self.learning_rate_init,
                momentum=self.momentum,
                nesterov=self.nesterovs_momentum and self.momentum > 0,
            )
        lr = self.learning_rate_init
        adam, steps = self.solver == "adam", 0
        if incremental and self._optimizer_state is not None:
            # partial_fit goes on with the optimizer of the previous call, as sklearn
            state, steps, lr = self._optimizer_state
            opt.load_state_dict(state)
        group = opt.param_groups[0]
        X_val = y_val = None
        if self.early_stopping:
            tr, va = train_test_split(
                np.arange(len(X)),
                random_state=rng,
                test_size=self.validation_fraction,
                stratify=self._strata(t),
            )
            if len(va) < 2:
                raise ValueError(
                    f"{type(self).__name__}: the validation set of early_stopping has "
                    f"{len(va)} sample; increase validation_fraction or the data"
                )
            X_val, y_val = X[va], y[va]
            X, t = X[tr], t[tr]
            best = None
        n = len(X)
        bs = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn(
                f"Got `batch_size` less than 1 or larger than sample size. It is going to be "
                f"clipped to {n}",
                UserWarning,
                stacklevel=3,
            )
        order = np.arange(n)
        converged = False
        self.n_iter_ = 0
        for _ in range(1 if incremental else self.max_iter):
            if self.shuffle:
                order = order[rng.permutation(n)]  # as sklearn: shuffle the last order
            total = 0.0
            for start in range(0, n, bs):
                sel = order[start : start + bs]
                xb, tb = X[sel], t[sel]
                m = len(sel)
                opt.zero_grad()
                loss = self._loss(F.linear_chain(Tensor(xb), layers, workspace), tb)
                loss.backward()
                value = float(loss._data) * self._loss_scale(tb)
                if self.alpha:
                    penalty = 0.0
                    for w in weights:
                        penalty += float(np.dot(w._data.ravel(), w._data.ravel()))
                        w._grad += (self.alpha / m) * w._data
                    value += 0.5 * self.alpha * penalty / m
                if adam:
                    # sklearn adds epsilon to sqrt(v), myelin (as PyTorch) to the bias-corrected
                    # sqrt(v / (1 - beta_2**t)): the same step with epsilon rescaled
                    steps += 1
                    group["eps"] = self.epsilon / math.sqrt(1.0 - self.beta_2**steps)
                opt.step()
                total += value * m
            self.n_iter_ += 1
            self.t_ += n
            self.loss_ = total / n
            self.loss_curve_.append(self.loss_)
            if not math.isfinite(self.loss_):
                raise ValueError(
                    f"{type(self).__name__}: the loss became {self.loss_} at iteration "
                    f"{self.n_iter_}; lower learning_rate_init or scale the inputs"
                )
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                lr = _set_lr(opt, lr, self.learning_rate_init / (self.t_ + 1) ** self.power_t)
            if self.early_stopping:
                self._store(params)
                score = self.score(X_val, y_val)
                assert self.validation_scores_ is not None  # set with early_stopping
                assert self.best_validation_score_ is not None
                self.validation_scores_.append(score)
                worse = score < self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best = self.coefs_, self.intercepts_
            else:
                worse = self.loss_ > self.best_loss_ - self.tol
            self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
            self.best_loss_ = min(self.best_loss_, self.loss_)
            if self._no_improvement_count > self.n_iter_no_change:
                if self.solver == "sgd" and self.learning_rate == "adaptive" and lr > 1e-6:
                    lr = _set_lr(opt, lr, lr / 5.0)
                    self._no_improvement_count = 0
                else:
                    converged = True
                    break
        self._store(params)
        self._optimizer_state = (opt.state_dict(), steps, lr)
        if self.early_stopping and best is not None:
            self.coefs_, self.intercepts_ = best
        if not converged and not incremental:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                f"optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.out_activation_ = self._out_activation()

    def _store(self, params: list) -> None:
        self.coefs_ = [p._data.T.copy() for p in params[0::2]]
        self.intercepts_ = [p._data.copy() for p in params[1::2]]

    def _predict_values(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._forward(X)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier on myelin (``sklearn.neural_network.MLPClassifier``,
    https://scikit-learn.org/stable/modules/generated/sklearn.neural_network.MLPClassifier.html).

    Hidden layers of ``hidden_layer_sizes`` units with ``activation``; the output is a softmax
    over the classes (a logistic unit for two classes or for each label of a multilabel target),
    trained on the cross-entropy plus ``0.5 * alpha * ||W||^2 / batch`` with Adam or SGD.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Units of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default "relu"
        Activation of the hidden layers.
    solver : {"adam", "sgd"}, default "adam"
    alpha : float, default 1e-4
        Strength of the L2 penalty on the weights (not the biases).
    batch_size : int or "auto", default "auto"
        Samples per minibatch; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        Step-size schedule of the "sgd" solver.
    learning_rate_init : float, default 1e-3
    power_t : float, default 0.5
        Exponent of the "invscaling" schedule.
    max_iter : int, default 200
        Most epochs; training stops earlier when the loss (or the validation score, with
        ``early_stopping``) has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    shuffle : bool, default True
        Shuffle the samples each epoch.
    random_state : int, RandomState or None
        Seeds the initial weights, the shuffling and the validation split.
    tol : float, default 1e-4
    verbose : bool, default False
        Print the loss of each epoch.
    warm_start : bool, default False
        Continue from the fitted weights on the next ``fit``.
    momentum : float, default 0.9
        Momentum of "sgd".
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified) and stop on its accuracy,
        keeping the best weights.
    validation_fraction : float, default 0.1
    beta_1, beta_2, epsilon : float
        Adam's moment decay rates and denominator term.
    n_iter_no_change : int, default 10

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_ : list of ndarray
        ``coefs_[i]`` is the (n_in, n_out) float64 weight matrix of layer i.
    intercepts_ : list of ndarray
    loss_ : float
        The mean training loss of the last epoch.
    loss_curve_ : list of float
    best_loss_ : float
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    n_features_in_ : int
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _encode_targets(self, y, first: bool, classes=None) -> np.ndarray:
        if isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y) == "multilabel-indicator"
        if first:
            if multilabel:
                labels = np.arange(y.shape[1])
            else:
                labels = np.unique(column_or_1d(y) if classes is None else np.asarray(classes))
                if len(labels) < 2:
                    raise ValueError(
                        f"MLPClassifier needs at least 2 classes, got 1 class: {labels[0]!r}"
                    )
            self.classes_ = labels
            self._multilabel = multilabel
        elif multilabel != self._multilabel or (multilabel and y.shape[1] != len(self.classes_)):
            raise ValueError(
                f"MLPClassifier: y is {'a' if multilabel else 'not a'} multilabel indicator"
                f"{f' of {y.shape[1]} labels' if multilabel else ''}; the network was fitted "
                f"on {'the' if self._multilabel else 'no'} multilabel indicator"
            )
        if multilabel:
            return np.asarray(y, dtype=np.float64)
        y = column_or_1d(y)
        codes = np.searchsorted(self.classes_, y)
        known = codes < len(self.classes_)
        known[known] = self.classes_[codes[known]] == y[known]
        if not known.all():
            raise ValueError(
                f"MLPClassifier: y has labels {np.unique(y[~known]).tolist()} that are not in "
                f"classes_ {self.classes_.tolist()}"
            )
        t = codes.astype(np.int64)
        return t.astype(np.float64).reshape(-1, 1) if len(self.classes_) == 2 else t

    def _strata(self, t: np.ndarray):
        # as sklearn: stratified when the network has one output (two classes), else not
        if self._multilabel or t.ndim == 1:
            return None
        return t[:, 0].astype(np.int64)

    def _out_activation(self) -> str:
        return "logistic" if self._multilabel or len(self.classes_) == 2 else "softmax"

    def _loss(self, out: Tensor, t: np.ndarray) -> Tensor:
        if t.ndim == 2:  # one logistic unit per label: sum over labels, mean over samples
            return F.binary_cross_entropy_with_logits(out, t, reduction="sum") * (1.0 / len(t))
        return F.cross_entropy(out, t)

    def fit(self, X, y):
        """Fit the network to ``X`` (n_samples, n_features) and labels ``y`` (n_samples,) or a
        multilabel indicator (n_samples, n_labels). Returns ``self``."""
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y`` from the current weights and optimizer state.

        ``classes`` (every label the classifier will see) is required on the first call and
        ignored after, as in scikit-learn. Returns ``self``.
        """
        if not hasattr(self, "classes_") and classes is None:
            if type_of_target(y) != "multilabel-indicator":
                raise ValueError(
                    "MLPClassifier: classes must be passed on the first call to partial_fit"
                )
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, float64 of shape (n_samples, n_classes), in the order of
        ``classes_``."""
        z = self._predict_values(X)
        if self.out_activation_ == "softmax":
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function without overflow
        if self._multilabel:
            return p
        return np.hstack([1.0 - p, p])

    def predict_log_proba(self, X) -> np.ndarray:
        """``log(predict_proba(X))``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (n_samples,), or a 0/1 indicator (n_samples, n_labels) when fitted on
        a multilabel target."""
        z = self._predict_values(X)
        if self._multilabel:
            return (z > 0).astype(int)
        if z.shape[1] == 1:
            return self.classes_[(z[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(z, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor on myelin (``sklearn.neural_network.MLPRegressor``,
    https://scikit-learn.org/stable/modules/generated/sklearn.neural_network.MLPRegressor.html).

    Hidden layers of ``hidden_layer_sizes`` units with ``activation`` and a linear output,
    trained on half the mean squared error plus ``0.5 * alpha * ||W||^2 / batch`` with Adam or
    SGD. The parameters and attributes are those of :class:`MLPClassifier` (without
    ``classes_``); ``early_stopping`` watches the validation R^2.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y, first: bool, classes=None) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _out_activation(self) -> str:
        return "identity"

    def _loss(self, out: Tensor, t: np.ndarray) -> Tensor:
        # as scikit-learn: the gradient is that of the squared error summed over the targets,
        # halved, averaged over the samples; the reported loss averages over the targets too
        return F.mse_loss(out, t, reduction="sum") * (0.5 / len(t))

    def _loss_scale(self, t: np.ndarray) -> float:
        return 1.0 / t.shape[1]

    def fit(self, X, y):
        """Fit the network to ``X`` (n_samples, n_features) and targets ``y`` (n_samples,) or
        (n_samples, n_targets). Returns ``self``."""
        return self._fit(X, y)

    def partial_fit(self, X, y):
        """One epoch over ``X``, ``y`` from the current weights and optimizer state. Returns
        ``self``."""
        return self._fit(X, y, incremental=True)

    def predict(self, X) -> np.ndarray:
        """Predictions, float64 of shape (n_samples,) or (n_samples, n_targets)."""
        z = self._predict_values(X)
        return z[:, 0] if z.shape[1] == 1 else z
