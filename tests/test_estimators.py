"""The scikit-learn estimators: API compliance, reproducibility, model selection, warm start, accuracy."""
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.ensemble import BaggingClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score, train_test_split
from sklearn.utils.estimator_checks import check_estimator

from fastopt.estimators import MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


# Checks of sklearn's suite that these estimators do not pass, and why (each is a documented design choice).
EXPECTED_FAILED = {}


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_check_estimator(Estimator):
    est = Estimator(hidden_layer_sizes=(16,), max_iter=50, learning_rate=1e-2, random_state=0)
    check_estimator(est, expected_failed_checks=EXPECTED_FAILED)


def test_digits_accuracy(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(256,), batch_size=64, max_iter=30, random_state=0)
    clf.fit(X_train, y_train)
    acc = accuracy_score(y_test, clf.predict(X_test))
    assert acc >= 0.95, acc
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_curve_[-1] < clf.loss_curve_[0]
    proba = clf.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))


def test_batch_norm_dropout_schedule_early_stopping(digits, monkeypatch):
    X_train, X_test, y_train, y_test = digits
    import fastopt.estimators._mlp as mlp
    split = []                                  # the validation split fit() draws, to re-score on it

    def recording_split(*args, **kwargs):
        split.append(train_test_split(*args, **kwargs))
        return split[-1]
    monkeypatch.setattr(mlp, "train_test_split", recording_split)
    clf = MLPClassifier(hidden_layer_sizes=(128, 64), batch_norm=True, dropout=0.1, optimizer="adamw",
                        optimizer_params={"weight_decay": 1e-2}, learning_rate=3e-3, lr_schedule="cosine",
                        warmup_epochs=1, l1=1e-6, l2=1e-5, clip_norm=5.0, early_stopping=True, n_iter_no_change=10,
                        tol=0.0, max_iter=40, random_state=0)
    clf.fit(X_train, y_train)
    assert accuracy_score(y_test, clf.predict(X_test)) >= 0.95
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the restored weights are the best epoch's: re-scoring is at least as good as the last epoch's score
    assert clf.best_validation_score_ >= clf.validation_scores_[-1]
    # ... and re-scoring the restored model on the validation split gives exactly the best epoch's recorded score
    (_, X_val, _, Y_val), = split
    assert clf.score(X_val, clf.classes_[Y_val]) == clf.best_validation_score_


def test_random_state_reproducible(digits):
    X_train, X_test, y_train, _ = digits
    a = MLPClassifier(hidden_layer_sizes=(32,), dropout=0.2, max_iter=5, random_state=3).fit(X_train, y_train)
    b = MLPClassifier(hidden_layer_sizes=(32,), dropout=0.2, max_iter=5, random_state=3).fit(X_train, y_train)
    c = MLPClassifier(hidden_layer_sizes=(32,), dropout=0.2, max_iter=5, random_state=4).fit(X_train, y_train)
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))
    assert not np.array_equal(a.predict_proba(X_test), c.predict_proba(X_test))


def test_warm_start_continues_training(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=2, warm_start=True, random_state=0)
    clf.fit(X_train, y_train)
    first = clf.coefs_[0].copy()
    loss_after_first = clf.loss_curve_[-1]
    clf.fit(X_train, y_train)
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 4
    assert clf.loss_curve_[-1] < loss_after_first
    assert not np.array_equal(first, clf.coefs_[0])
    cold = MLPClassifier(hidden_layer_sizes=(64,), max_iter=2, random_state=0).fit(X_train, y_train)
    assert cold.n_iter_ == 2


def test_partial_fit(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X_train, y_train)
    for _ in range(10):
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
    assert clf.n_iter_ == 10
    assert accuracy_score(y_test, clf.predict(X_test)) >= 0.9


@pytest.mark.slow
def test_model_selection_and_ensembles(digits):
    X_train, X_test, y_train, y_test = digits
    base = MLPClassifier(hidden_layer_sizes=(32,), learning_rate=1e-2, max_iter=8, random_state=0)
    grid = GridSearchCV(base, {"learning_rate": [1e-3, 1e-2], "batch_norm": [False, True]}, cv=3)
    grid.fit(X_train, y_train)
    assert set(grid.best_params_) == {"learning_rate", "batch_norm"}
    assert grid.score(X_test, y_test) >= 0.85
    rand = RandomizedSearchCV(base, {"l2": [0.0, 1e-4, 1e-3], "optimizer": ["adam", "rmsprop", "nadam"]},
                              n_iter=3, cv=2, random_state=0)
    rand.fit(X_train, y_train)
    assert rand.best_score_ > 0.8
    scores = cross_val_score(base, X_train, y_train, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8
    bag = BaggingClassifier(base, n_estimators=3, random_state=0).fit(X_train, y_train)
    assert f1_score(y_test, bag.predict(X_test), average="macro") >= 0.85


def test_regressor_learns_and_pickles():
    X, y = make_regression(n_samples=400, n_features=8, noise=0.1, random_state=0)
    y = y / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(64,), learning_rate=1e-2, max_iter=60, random_state=0).fit(X, y)
    assert reg.score(X, y) > 0.95
    assert reg.predict(X).shape == (400,)
    clone = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(clone.predict(X), reg.predict(X))
    Y2 = np.stack([y, -y], axis=1)
    reg2 = MLPRegressor(hidden_layer_sizes=(32,), learning_rate=1e-2, max_iter=40, random_state=0).fit(X, Y2)
    assert reg2.predict(X).shape == (400, 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(dropout=1.0), "dropout"),
    (dict(optimizer="bogus"), "optimizer must be one of"),
    (dict(lr_schedule="bogus"), "lr_schedule"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(batch_size=0), "batch_size"),
    (dict(clip_norm=0.0), "clip_norm"),
    (dict(dtype="float16"), "dtype"),
])
def test_bad_parameters(kwargs, match, digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**kwargs).fit(X_train[:50], y_train[:50])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_loss_is_the_public_cross_entropy(dtype):
    """The estimator calls the cross-entropy kernel without the public checks: same loss and gradient."""
    from fastopt.losses import softmax_cross_entropy
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 4, 40)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, dtype=dtype, random_state=0).fit(X, y)
    logits = rng.standard_normal((17, 4)).astype(dtype)
    labels = rng.integers(0, 4, 17).astype(np.intp)
    loss, grad = clf._loss(logits, labels, np.empty_like(logits))
    ref_loss, ref_grad = softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_array_equal(grad, ref_grad)


def test_float32_predictions_do_not_depend_on_the_batch(digits):
    """Inference rounds float64 products once to float32: on real data a row predicts the same alone or in any batch
    (BLAS's summation order still depends on the row count; it shows only for a float64 product within ~1e-16 of a
    float32 rounding boundary, which these digits do not have)."""
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=3, random_state=0).fit(X_train, y_train)
    full = clf.predict_proba(X_test[:50])
    for i in (0, 7, 49):
        np.testing.assert_array_equal(clf.predict_proba(X_test[i:i + 1])[0], full[i])
    np.testing.assert_array_equal(clf.predict_proba(X_test[:50][::-1])[::-1], full)


@pytest.mark.parametrize("change", [{"dtype": "float64"}, {"hidden_layer_sizes": (9,)}])
def test_warm_start_rejects_a_changed_network(change, digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, warm_start=True, random_state=0).fit(X_train, y_train)
    clf.set_params(**change)
    with pytest.raises(ValueError, match="continue the fitted network"):
        clf.fit(X_train, y_train)
    with pytest.raises(ValueError, match="continue the fitted network"):
        clf.partial_fit(X_train, y_train)



# ---------------------------------------------------------------------------------------------- scikit-learn's start
# For the same random_state the estimators start from scikit-learn's initial weights and split and shuffle as it
# does; with scikit-learn's update rules (penalty_scaling="batch": its alpha; eps_placement="sklearn": its Adam) a
# fit then follows scikit-learn's trajectory up to rounding.
SKLEARN_RULES = dict(optimizer="adam", penalty_scaling="batch", optimizer_params={"eps_placement": "sklearn"})


def _digits64():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def _max_rel_diff(ours, theirs):
    """max over the arrays of max|ours - theirs| / max|theirs| (coefs_ and intercepts_)."""
    return max(float(np.abs(a - b).max() / np.abs(b).max())
               for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_))


@pytest.mark.parametrize("hidden", [(64,), (32, 16, 8)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_initial_weights_are_sklearn(hidden, dtype, Estimator):
    from sklearn.neural_network import MLPClassifier as SkC, MLPRegressor as SkR
    from sklearn.utils import check_random_state
    X, y = _digits64()
    X = X.astype(dtype)
    if Estimator is MLPRegressor:
        y = np.eye(10)[y]                                   # 10 outputs, as the classifier's
    # learning_rate=0, l2=0: one epoch of Adam steps of 0 * update, which leave the initial weights as they are
    est = Estimator(hidden_layer_sizes=hidden, learning_rate=0.0, l2=0.0, max_iter=1, random_state=7, dtype=dtype)
    est.fit(X, y)
    sk = (SkC if Estimator is MLPClassifier else SkR)(hidden_layer_sizes=hidden, random_state=7)
    sk._random_state = check_random_state(7)                # what sklearn's _fit does, then its _init_coef per layer
    sizes = [X.shape[1], *hidden, 10]
    expected = [sk._init_coef(a, b, np.dtype(dtype)) for a, b in zip(sizes[:-1], sizes[1:])]
    for ours, theirs in zip(est.coefs_ + est.intercepts_, [c for c, _ in expected] + [b for _, b in expected]):
        assert ours.dtype == theirs.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ours, theirs)        # the same draws, float64 cast to dtype: bit-equal


# Measured (seeds 0-2, 3 and 10 epochs, hidden (64, 32), batch 128 of 1797 rows: 14 full batches and one of 5 per
# epoch): max relative difference 4.1e-15 in float64 and 7.4e-7 in float32, the loss curves within 4.5e-16 and 1.8e-7.
# Not bit-equal: the same math is evaluated in another order -- fastopt's C kernels for the softmax cross-entropy,
# bias + ReLU, the penalty and the Adam step (eps / sqrt(1 - beta2^t) folded into torch's form) against NumPy
# expressions in scikit-learn, and BLAS on other operand layouts -- so each step's results differ in the last bits
# (1e-16 relative in float64, 6e-8 in float32), and 10 epochs of Adam only amplify that a few times. The tolerances
# leave ~250x (float64) and ~14x (float32) margin; without the update rules the difference is 1e-2 to 2e-1.
TRAJECTORY_RTOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_follows_sklearn(dtype):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP
    X, y = _digits64()
    X = X.astype(dtype)
    common = dict(hidden_layer_sizes=(64, 32), batch_size=128, max_iter=5, tol=0.0, n_iter_no_change=100,
                  shuffle=True, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkMLP(solver="adam", learning_rate_init=1e-3, alpha=1e-4, **common).fit(X, y)
        ours = MLPClassifier(learning_rate=1e-3, l2=1e-4, dtype=dtype, **SKLEARN_RULES, **common).fit(X, y)
        default_rules = MLPClassifier(learning_rate=1e-3, l2=1e-4, dtype=dtype, **common).fit(X, y)
    assert _max_rel_diff(ours, sk) < TRAJECTORY_RTOL[dtype]
    np.testing.assert_allclose(ours.loss_curve_, sk.loss_curve_, rtol=TRAJECTORY_RTOL[dtype])
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))
    assert _max_rel_diff(default_rules, sk) > 1e-3          # fastopt's own L2 scaling and eps: another trajectory


def test_early_stopping_split_is_sklearn():
    """The validation split draws from the same RandomState after the weights: the same validation scores (float64,
    scikit-learn's update rules), epoch by epoch. The stopping rules differ (see MLPClassifier's docstring): on
    fits that stop, fastopt stops first, with the same scores up to there."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP
    X, y = _digits64()
    common = dict(hidden_layer_sizes=(32,), batch_size=100, early_stopping=True, n_iter_no_change=3,
                  validation_fraction=0.2, tol=0.0, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkMLP(max_iter=8, **common).fit(X, y)                   # no stop: the last epoch is the best
    ours = MLPClassifier(max_iter=8, dtype="float64", **SKLEARN_RULES, **common).fit(X, y)
    np.testing.assert_array_equal(ours.validation_scores_, sk.validation_scores_)
    assert _max_rel_diff(ours, sk) < TRAJECTORY_RTOL["float64"]
    sk = SkMLP(max_iter=40, learning_rate_init=1e-2, **common).fit(X, y)
    ours = MLPClassifier(max_iter=40, learning_rate=1e-2, dtype="float64", **SKLEARN_RULES, **common).fit(X, y)
    assert 0 < ours.n_iter_ < sk.n_iter_
    np.testing.assert_array_equal(ours.validation_scores_, sk.validation_scores_[:ours.n_iter_])


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_penalty_scaling_batch_divides_by_the_batch(optimizer):
    """penalty_scaling="batch" is l1, l2 divided by the batch's sample count (lbfgs: the whole training set)."""
    X, y = _digits64()
    X, y = X[:1536], y[:1536]                                # 12 batches of 128, none partial
    common = dict(hidden_layer_sizes=(16,), batch_size=128, max_iter=3, optimizer=optimizer, random_state=0,
                  dtype="float64")
    m = 128 if optimizer == "adam" else 1536
    with pytest.warns(Warning):                              # max_iter reached
        scaled = MLPClassifier(l1=1e-3, l2=1e-2, penalty_scaling="batch", **common).fit(X, y)
    with pytest.warns(Warning):
        plain = MLPClassifier(l1=1e-3 / m, l2=1e-2 / m, **common).fit(X, y)
    for a, b in zip(scaled.coefs_ + scaled.intercepts_, plain.coefs_ + plain.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(scaled.loss_curve_, plain.loss_curve_)


def test_sklearn_rule_options_are_checked():
    X, y = _digits64()
    with pytest.raises(ValueError, match="penalty_scaling must be one of"):
        MLPClassifier(penalty_scaling="sample").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="eps_placement must be one of"):
        MLPClassifier(optimizer_params={"eps_placement": "keras"}).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="eps_placement is an option of optimizer='adam' only"):
        MLPClassifier(optimizer="adamw", optimizer_params={"eps_placement": "sklearn"}).fit(X[:50], y[:50])
    torch_form = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0,
                               optimizer_params={"eps_placement": "torch"}).fit(X, y)
    default = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(X, y)
    np.testing.assert_array_equal(torch_form.coefs_[0], default.coefs_[0])
