"""Ctrl-C during a fit (issue 15): the fit stops at the next step boundary and returns a consistent model.

SIGINT is raised from inside the loss of the k-th minibatch, i.e. between the forward and the backward pass, where
an immediate KeyboardInterrupt would leave the step half-done. The fit must finish that step (optimizer, lr schedule
and sample counter together), stop there with a warning and return, as scikit-learn's MLP does."""
import signal

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning

from fastopt.estimators import MLPClassifier

X, y = make_classification(n_samples=200, n_features=8, n_informative=5, n_classes=3, random_state=0)
BATCH = 20                       # 10 steps an epoch


def _fit_interrupted_at(k, times=1, **kwargs):
    """Fits with SIGINT raised `times` times inside the loss of step k (1-based); returns (model, steps seen)."""
    est = MLPClassifier((16,), batch_size=BATCH, max_iter=5, random_state=0, learning_rate=0.01, **kwargs)
    calls = []
    loss = est._loss

    def interrupting_loss(out, yb, grad_out):
        calls.append(1)
        if len(calls) == k:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return loss(out, yb, grad_out)

    est._loss = interrupting_loss
    with pytest.warns(UserWarning, match="interrupted by user"):
        est.fit(X, y)
    return est, len(calls)


@pytest.mark.parametrize("k", [1, 7, 10, 23])
def test_interrupt_stops_after_the_step_in_flight(k):
    est, calls = _fit_interrupted_at(k, lr_schedule="cosine")
    assert calls == k                                           # no step after the interrupted one
    assert est.t_ == k * BATCH                                  # the interrupted step counted
    assert est.n_iter_ == k // 10 and len(est.loss_curve_) == k // 10   # complete epochs only
    assert est._sched.last_epoch == k                           # the schedule stepped with the optimizer
    for i in range(len(est._opt.params)):
        assert int(est._opt.state[i]["step"]) == k              # every param's state from the same step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert est.predict(X).shape == y.shape


def test_interrupted_weights_equal_an_uninterrupted_fit_of_as_many_steps():
    est, _ = _fit_interrupted_at(20)                            # the last batch of epoch 2
    ref = MLPClassifier((16,), batch_size=BATCH, max_iter=2, random_state=0, learning_rate=0.01)
    with pytest.warns(ConvergenceWarning):                      # max_iter reached
        ref.fit(X, y)
    assert est.n_iter_ == 2 and est.loss_curve_ == ref.loss_curve_
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_interrupt_with_early_stopping_restores_the_best_weights(monkeypatch):
    seen = []                                                   # the weights at each epoch's validation
    score = MLPClassifier._score_array

    def recording_score(self, Xv, yv):
        seen.append([a.copy() for a in self.coefs_ + self.intercepts_])
        return score(self, Xv, yv)

    monkeypatch.setattr(MLPClassifier, "_score_array", recording_score)
    est, _ = _fit_interrupted_at(25, early_stopping=True, validation_fraction=0.2)
    assert len(est.validation_scores_) == est.n_iter_ == len(seen) == 3     # 160 training samples: 8 steps an epoch
    best = seen[int(np.argmax(est.validation_scores_))]
    # the 25th step moved the weights past the third epoch's; restored, they are the best epoch's again
    for a, b in zip(est.coefs_ + est.intercepts_, best):
        np.testing.assert_array_equal(a, b)


def test_second_interrupt_raises_at_once():
    est = MLPClassifier((16,), batch_size=BATCH, max_iter=5, random_state=0)
    loss = est._loss

    def twice(out, yb, grad_out):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        return loss(out, yb, grad_out)

    est._loss = twice
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
