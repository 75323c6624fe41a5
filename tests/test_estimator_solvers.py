"""The estimators' solvers beyond the element-wise optimizers (fastopt/estimators/_solvers.py): "adafactor",
"muon" (Muon on the weight matrices, AdamW on the rest), full-batch "lbfgs"; "sparseadam" is refused."""
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import check_estimator

import fastopt
from fastopt.estimators import MLPClassifier, MLPRegressor
from fastopt.estimators._solvers import SOLVERS, RoleOptimizer


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adafactor", "muon", "lbfgs"])
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_check_estimator(Estimator, solver):
    est = Estimator(hidden_layer_sizes=(16,), max_iter=50, learning_rate=1e-2, optimizer=solver, random_state=0)
    check_estimator(est)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


# (solver, estimator parameters, accuracy on the held-out quarter of digits it must reach; chance is 0.1)
CASES = [
    ("adafactor", dict(learning_rate=3e-2, max_iter=5), 0.9),      # measured 0.931
    ("muon", dict(learning_rate=2e-2, max_iter=5), 0.93),          # measured 0.958
    ("lbfgs", dict(max_iter=30), 0.93),                            # measured 0.962
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver,params,accuracy", CASES, ids=[c[0] for c in CASES])
def test_solver_fits_digits_deterministically(solver, params, accuracy, digits):
    X_train, X_test, y_train, y_test = digits

    def fitted():
        return MLPClassifier(hidden_layer_sizes=(32,), optimizer=solver, random_state=0, **params).fit(
            X_train, y_train)

    clf = fitted()
    acc = accuracy_score(y_test, clf.predict(X_test))
    assert acc >= accuracy, (solver, acc)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    again = fitted()
    for a, b in zip(clf.coefs_ + clf.intercepts_, again.coefs_ + again.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["adafactor", "muon"])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit(solver, digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), optimizer=solver, learning_rate=3e-2, random_state=0)
    for _ in range(5):
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
    assert clf.n_iter_ == 5
    assert accuracy_score(y_test, clf.predict(X_test)) >= 0.9


def test_muon_steps_matrices_and_adamw_the_rest(digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), batch_norm=True, optimizer="muon", learning_rate=1e-2,
                        optimizer_params={"momentum": 0.9}, lr_schedule="cosine", max_iter=1, random_state=0)
    clf.fit(X_train[:200], y_train[:200])
    opt = clf._opt
    assert isinstance(opt, RoleOptimizer)
    (muon, matrices), (adamw, others) = opt.parts
    assert isinstance(muon, fastopt.Muon) and isinstance(adamw, fastopt.AdamW)
    params = clf._net.params
    assert [params[i] for i in matrices] == clf._net.weights and all(params[i].ndim == 2 for i in matrices)
    assert all(params[i].ndim == 1 for i in others) and len(matrices) + len(others) == len(params)
    assert muon.param_groups[0]["momentum"] == 0.9
    # the cosine schedule runs on both optimizers' groups: the same lr, annealed from learning_rate
    lrs = [g["lr"] for g in opt.param_groups]
    assert len(lrs) == 2 and lrs[0] == lrs[1] < 1e-2


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_is_full_batch_and_has_no_partial_fit(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), optimizer="lbfgs", max_iter=5, random_state=0)
    assert not hasattr(clf, "partial_fit")          # as scikit-learn: lbfgs is not stochastic
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
    with pytest.warns(Warning, match="lbfgs failed to converge"):
        clf.fit(X_train, y_train)
    assert clf.n_iter_ == 5                          # max_iter counts L-BFGS iterations
    assert clf.loss_ <= clf.loss_curve_[0] and clf.t_ == 0
    assert hasattr(MLPClassifier(optimizer="adam"), "partial_fit")
    assert hasattr(MLPClassifier(optimizer="bogus"), "partial_fit")      # which then raises the name's error
    reg = MLPRegressor(hidden_layer_sizes=(16,), optimizer="lbfgs", max_iter=50, random_state=0)
    assert not hasattr(reg, "partial_fit")
    Xr = X_train[:300]
    yr = Xr[:, 20] - Xr[:, 43]
    assert reg.fit(Xr, yr).score(Xr, yr) > 0.9


def test_lbfgs_tol_is_the_gradient_tolerance(digits):
    X_train, _, y_train, _ = digits
    loose = MLPClassifier(hidden_layer_sizes=(16,), optimizer="lbfgs", max_iter=200, tol=10.0, random_state=0)
    loose.fit(X_train, y_train)
    assert loose.n_iter_ == 0                        # max |gradient| <= tol at the start: nothing to do


def test_sparseadam_is_not_a_solver(digits):
    X_train, _, y_train, _ = digits
    for optimizer in ("sparseadam", "SparseAdam", fastopt.SparseAdam):
        with pytest.raises(ValueError, match="SparseAdam is not a solver.*dense"):
            MLPClassifier(optimizer=optimizer).fit(X_train[:50], y_train[:50])
    with pytest.raises(ValueError, match="optimizer must be one of") as info:
        MLPClassifier(optimizer="bogus").fit(X_train[:50], y_train[:50])
    for name in ("adam", "adafactor", "muon", "lbfgs"):
        assert repr(name) in str(info.value)
    assert "'sparseadam'" not in str(info.value)


def test_solver_names_cover_every_optimizer():
    names = {cls.__name__.lower() for cls in fastopt.optim.OPTIMIZERS.values()}
    names |= {cls.__name__.lower() for cls in fastopt.optim.NOT_ELEMENTWISE}
    assert set(SOLVERS) == names - {"sparseadam"}
    assert all(SOLVERS[name].__name__.lower() == name for name in SOLVERS)


def test_solver_classes_are_accepted(digits):
    X_train, _, y_train, _ = digits
    by_name = MLPClassifier(hidden_layer_sizes=(8,), optimizer="adafactor", max_iter=1, random_state=0)
    by_class = MLPClassifier(hidden_layer_sizes=(8,), optimizer=fastopt.Adafactor, max_iter=1, random_state=0)
    np.testing.assert_array_equal(by_name.fit(X_train, y_train).coefs_[0], by_class.fit(X_train, y_train).coefs_[0])
