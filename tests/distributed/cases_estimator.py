"""MLPClassifier / MLPRegressor with comm= under mpiexec (started by tests/test_distributed.py): the model stays
the same on every rank and reaches the single-process accuracy."""
import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import train_test_split

from fastopt.estimators import MLPClassifier, MLPRegressor

MPI = pytest.importorskip("mpi4py.MPI")
COMM = MPI.COMM_WORLD


def same_on_every_rank(arrays):
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    return all(np.array_equal(flat, other) for other in COMM.allgather(flat))


def test_classifier_matches_one_process_accuracy():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    kw = dict(hidden_layer_sizes=(64,), batch_norm=True, optimizer="adamw", learning_rate=3e-3, max_iter=15,
              early_stopping=True, n_iter_no_change=20, batch_size=64)
    dist = MLPClassifier(comm=COMM, random_state=0, **kw).fit(Xtr, ytr)
    assert same_on_every_rank(dist.coefs_ + dist.intercepts_)
    assert same_on_every_rank([dist.loss_curve_, dist.validation_scores_])
    single = MLPClassifier(random_state=0, **kw).fit(Xtr, ytr)
    acc_d, acc_s = dist.score(Xte, yte), single.score(Xte, yte)
    assert acc_d >= acc_s - 0.02, (acc_d, acc_s)
    assert dist.get_params()["comm"] is COMM
    unseeded = MLPClassifier(comm=COMM, **kw).fit(Xtr, ytr)      # random_state=None: rank 0's seed is shared
    assert same_on_every_rank(unseeded.coefs_ + unseeded.intercepts_)


def test_regressor_without_batch_norm_equals_global_batches():
    """No batch norm, no dropout: the distributed gradient is the global batch's mean gradient, so the fit follows
    one process's to rounding (the sums run in another order)."""
    X, y = make_regression(n_samples=203, n_features=6, noise=0.1, random_state=0)
    kw = dict(hidden_layer_sizes=(16,), max_iter=5, batch_size=32, random_state=1, l2=1e-3, clip_norm=5.0,
              shuffle=True, n_iter_no_change=100)
    dist = MLPRegressor(comm=COMM, **kw).fit(X, y)
    single = MLPRegressor(**kw).fit(X, y)
    for a, b in zip(dist.coefs_, single.coefs_):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(dist.loss_curve_, single.loss_curve_, rtol=1e-4)
    assert same_on_every_rank(dist.coefs_)


def test_comm_must_be_a_communicator():
    with pytest.raises(TypeError, match="comm must be an mpi4py intracommunicator"):
        MLPClassifier(comm="world", max_iter=1).fit(np.zeros((4, 2)), [0, 1, 0, 1])
