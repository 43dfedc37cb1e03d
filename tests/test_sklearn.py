"""myelin.sklearn: scikit-learn's estimator checks, and agreement with scikit-learn's MLP."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from myelin.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@parametrize_with_checks([MLPClassifier(random_state=0), MLPRegressor(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---------------------------------------------------------------- same training as sklearn


def _pair(ours, theirs, X, y):
    """Fit myelin's and scikit-learn's estimator with the same parameters on the same data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ours.fit(X, y), theirs.fit(X, y)


def _data(kind, n=120, seed=0):
    if kind == "regression":
        X, y = make_regression(n, 5, n_informative=4, noise=5.0, random_state=seed)
        return X, y / y.std()
    if kind == "multioutput":
        X, y = make_regression(n, 5, n_targets=3, noise=5.0, random_state=seed)
        return X, y / y.std(axis=0)
    classes = {"binary": 2, "multiclass": 3}[kind]
    return make_classification(
        n, 6, n_informative=4, n_classes=classes, n_clusters_per_class=1, random_state=seed
    )


@pytest.mark.parametrize(
    "kind, params",
    [
        ("multiclass", dict(activation="relu", nesterovs_momentum=True)),
        ("binary", dict(activation="tanh", batch_size=32)),
        ("multiclass", dict(activation="logistic", learning_rate="invscaling", momentum=0.5)),
        ("regression", dict(activation="relu", alpha=0.01, batch_size=50)),
        ("multioutput", dict(activation="identity", nesterovs_momentum=False)),
        ("multiclass", dict(solver="adam", learning_rate_init=0.01, alpha=0.001)),
        ("binary", dict(solver="adam", activation="tanh", batch_size=40)),
        ("regression", dict(solver="adam", beta_1=0.8, epsilon=1e-4)),
        ("multiclass", dict(learning_rate="adaptive", tol=0.01, n_iter_no_change=2, max_iter=80)),
        ("multiclass", dict(solver="adam", early_stopping=True, n_iter_no_change=3, max_iter=60)),
        ("regression", dict(early_stopping=True, validation_fraction=0.2, max_iter=40)),
        ("binary", dict(early_stopping=True, n_iter_no_change=2, max_iter=40)),
    ],
)
def test_training_follows_sklearns_trajectory(kind, params):
    # The same arithmetic in both: the same Glorot draws and shuffles from the same RandomState,
    # the same loss, L2 penalty and updates; only float64 rounding differs.
    from sklearn.neural_network import MLPClassifier as SkC
    from sklearn.neural_network import MLPRegressor as SkR

    X, y = _data(kind)
    common = dict(
        hidden_layer_sizes=(16, 8),
        solver="sgd",
        learning_rate_init=0.05,
        max_iter=15,
        random_state=3,
    )
    common.update(params)
    ours, theirs = (
        (MLPRegressor, SkR)
        if "regression" in kind or kind == "multioutput"
        else (
            MLPClassifier,
            SkC,
        )
    )
    a, b = _pair(ours(**common), theirs(**common), X, y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(ca, cb, rtol=1e-9, atol=1e-12)
    if a.early_stopping:
        np.testing.assert_allclose(a.validation_scores_, b.validation_scores_, rtol=1e-10)
    assert (a.n_iter_, a.t_, a.n_outputs_, a.out_activation_) == (
        b.n_iter_,
        b.t_,
        b.n_outputs_,
        b.out_activation_,
    )
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-9, atol=1e-12)
    if hasattr(b, "predict_proba"):
        np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- in sklearn's tools


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_cross_validation_and_grid_search():
    from sklearn.neural_network import MLPClassifier as SkC

    X, y = make_classification(300, 8, n_informative=5, n_classes=3, random_state=1)
    scores = {}
    for cls in (MLPClassifier, SkC):
        pipe = make_pipeline(StandardScaler(), cls(hidden_layer_sizes=(32,), random_state=0))
        scores[cls] = cross_val_score(pipe, X, y, cv=3)
    np.testing.assert_allclose(scores[MLPClassifier], scores[SkC])  # the same fits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1.0]}, cv=2).fit(X, y)
    assert grid.best_params_["mlpclassifier__alpha"] in (1e-4, 1.0)
    assert grid.predict(X).shape == (300,)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_string_labels_binary_and_multilabel():
    X, y = _data("binary")
    labels = np.array(["no", "yes"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=300).fit(X, labels)
    assert list(clf.classes_) == ["no", "yes"] and clf.coefs_[-1].shape == (16, 1)
    proba = clf.predict_proba(X)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, labels) > 0.9
    Y = np.stack([y, 1 - y, (X[:, 0] > 0).astype(int)], axis=1)
    multi = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=300).fit(X, Y)
    assert multi.predict(X).shape == (120, 3) and multi.out_activation_ == "logistic"
    assert np.mean(multi.predict(X) == Y) > 0.9


def test_early_stopping_keeps_the_best_validation_weights():
    X, y = _data("multiclass", n=300)
    clf = MLPClassifier(early_stopping=True, random_state=0, n_iter_no_change=5).fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    reg = MLPRegressor(early_stopping=True, random_state=0, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(*_data("regression", n=200))
    assert reg.best_validation_score_ == max(reg.validation_scores_)


def test_warm_start_continues_and_convergence_warning():
    X, y = _data("regression")
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0, warm_start=True)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        reg.fit(X, y)
    first = reg.loss_curve_[-1]
    with pytest.warns(ConvergenceWarning):
        reg.fit(X, y)
    # as sklearn: the loss curve goes on, n_iter_ counts this fit's epochs
    assert len(reg.loss_curve_) == 10 and reg.n_iter_ == 5 and reg.loss_curve_[-1] < first
    cold = clone(reg).set_params(warm_start=False)
    with pytest.warns(ConvergenceWarning):
        cold.fit(X, y)
    assert len(cold.loss_curve_) == 5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_verbose_prints_the_loss_of_each_epoch(capsys):
    X, y = _data("multiclass")
    clf = MLPClassifier(random_state=0, verbose=True).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == clf.n_iter_ and out[0] == f"Iteration 1, loss = {clf.loss_curve_[0]:.8f}"


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(hidden_layer_sizes=(10, 0)), ValueError, "hidden_layer_sizes must be >= 1"),
        (dict(hidden_layer_sizes="10"), TypeError, "hidden_layer_sizes must be int"),
        (dict(activation="softplus"), ValueError, "activation must be one of"),
        (dict(solver="lbfgs"), ValueError, r"solver must be one of \['adam', 'sgd'\]"),
        (dict(alpha=-1.0), ValueError, "alpha must be >= 0.0, got -1.0"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(learning_rate_init=0.0), ValueError, "learning_rate_init must be > 0.0"),
        (dict(max_iter=2.5), TypeError, "max_iter must be int, got 2.5"),
        (dict(beta_2=1.0), ValueError, r"beta_2 must be in \[0, 1\)"),
        (dict(early_stopping=True, validation_fraction=0.0), ValueError, "validation_fraction"),
    ],
)
def test_bad_parameters_are_named(params, error, match):
    X, y = _data("binary", n=20)
    with pytest.raises(error, match=match):
        MLPClassifier(**params).fit(X, y)


def test_pickle_round_trip():
    import pickle

    X, y = _data("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_importing_myelin_does_not_import_sklearn():
    code = "import sys, myelin; assert 'sklearn' not in sys.modules, 'sklearn was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    # without scikit-learn, myelin.sklearn says what to install
    code = "import sys; sys.modules['sklearn'] = None; import myelin.sklearn"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "pip install scikit-learn" in proc.stderr


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_partial_fit_follows_sklearns(kind, solver):
    from sklearn.neural_network import MLPClassifier as SkC
    from sklearn.neural_network import MLPRegressor as SkR

    X, y = _data(kind)
    params = dict(hidden_layer_sizes=(12,), solver=solver, random_state=0, batch_size=25)
    if kind == "regression":
        ours, theirs = MLPRegressor(**params), SkR(**params)
        kw = {}
    else:
        ours, theirs = MLPClassifier(**params), SkC(**params)
        kw = {"classes": np.unique(y)}
    for part in np.array_split(np.arange(len(X)), 4):  # the optimizer state carries over
        ours.partial_fit(X[part], y[part], **kw)
        theirs.partial_fit(X[part], y[part], **kw)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_


def test_partial_fit_needs_classes_first_and_known_labels():
    X, y = _data("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # a batch without class 2
    assert list(clf.classes_) == [0, 1, 2] and clf.predict_proba(X).shape == (120, 3)
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in classes_"):
        clf.partial_fit(X[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
