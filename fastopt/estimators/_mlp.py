"""scikit-learn estimators: multilayer perceptrons trained with fastopt's kernels.

Linear layers use NumPy matmul (BLAS); batch norm, dropout, the loss and its gradient, L1/L2 penalties, gradient
clipping, the optimizer step and the lr schedule are fastopt kernels. The estimators follow the scikit-learn API
(``get_params``/``set_params``, ``fit``/``partial_fit``/``predict``, fitted attributes ending in ``_``), so model
selection, ensembles and metrics of scikit-learn work on them.
"""
import contextlib
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from fastopt import optim, schedules
from fastopt._validation import kernel_input
from fastopt.callbacks import EarlyStopping
from fastopt.clip import clip_grad_norm_
from fastopt.estimators._interrupt import deferred_interrupt
from fastopt.estimators._network import Network
from fastopt.estimators._solvers import SOLVERS, fit_lbfgs, make_optimizer, solver_name  # noqa: F401 (SOLVERS)
from fastopt.estimators._threads import training_threads
from fastopt.losses import mse, softmax_cross_entropy
from fastopt.regularize import add_penalty_grad_

OPTIMIZERS = dict(optim.OPTIMIZERS)
LR_SCHEDULES = ("constant", "cosine", "linear", "onecycle")
PENALTY_SCALINGS = ("none", "batch")



@contextlib.contextmanager
def _stepping(opt):
    """The one place an estimator switches a Schedule-Free optimizer's mode: its params hold y (``train()``) only
    while the minibatch steps run, and x (``eval()``), the point to evaluate, everywhere else, so that validation
    scores, early stopping's saved weights, predictions, the fitted coefs_ and pickles all see x, and a
    partial_fit goes back to y first. Nothing for an optimizer without modes."""
    modes = callable(getattr(opt, "train", None)) and callable(getattr(opt, "eval", None))
    if modes:
        opt.train()
    try:
        yield
    finally:
        if modes:
            opt.eval()

class _BaseMLP(BaseEstimator):
    """Shared fitting loop. Subclasses define the output size, the loss and the validation score."""

    def __init__(self, hidden_layer_sizes=(100,), *, batch_norm=False, dropout=0.0, optimizer="adam",
                 optimizer_params=None, learning_rate=1e-3, lr_schedule="constant", warmup_epochs=0, l1=0.0,
                 l2=1e-4, penalty_scaling="none", clip_norm=None, batch_size=64, max_iter=200, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, shuffle=True, random_state=None,
                 warm_start=False, verbose=False, dtype="float32", comm=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.optimizer = optimizer
        self.optimizer_params = optimizer_params
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.l1 = l1
        self.l2 = l2
        self.penalty_scaling = penalty_scaling
        self.clip_norm = clip_norm
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.dtype = dtype
        self.comm = comm

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        hidden = self.hidden_layer_sizes
        hidden = (hidden,) if np.isscalar(hidden) else tuple(hidden)
        if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        self._solver = solver_name(self.optimizer)         # _solvers.py: the names, and what is not a solver
        if self._solver == "lbfgs" and self.comm is not None:
            raise ValueError("optimizer='lbfgs' does not support comm (data-parallel fitting is minibatch only)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for name in ("learning_rate", "l1", "l2", "tol", "warmup_epochs"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.penalty_scaling not in PENALTY_SCALINGS:
            raise ValueError(f"penalty_scaling must be one of {PENALTY_SCALINGS}, got {self.penalty_scaling!r}")
        if self.clip_norm is not None and not (self.clip_norm > 0):
            raise ValueError(f"clip_norm must be None or > 0, got {self.clip_norm!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if not (0.0 < self.validation_fraction < 1.0):
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.n_iter_no_change < 1:
            raise ValueError(f"n_iter_no_change must be >= 1, got {self.n_iter_no_change!r}")
        dtype = np.dtype(self.dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        self._dp = None
        if self.comm is not None:              # imported on use: fitting without comm never needs mpi4py
            from fastopt.estimators._data_parallel import DataParallel
            self._dp = DataParallel(self.comm)     # TypeError for what is not a communicator
        return hidden, dtype

    # ------------------------------------------------------------------ model pieces
    def _make_optimizer(self, params, total_steps, steps_per_epoch):
        opt = make_optimizer(self._solver, self.optimizer, params, self.learning_rate, self.optimizer_params or {})
        warmup = int(round(self.warmup_epochs * steps_per_epoch))
        main = max(1, total_steps - warmup)
        if self.lr_schedule == "onecycle":
            sched = schedules.OneCycleLR(opt, max_lr=self.learning_rate, total_steps=max(2, total_steps),
                                         cycle_momentum=False)
        elif self.lr_schedule == "constant" and warmup == 0:
            sched = None
        else:
            if self.lr_schedule == "cosine":
                body = schedules.CosineAnnealingLR(opt, T_max=main)
            elif self.lr_schedule == "linear":
                body = schedules.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=main)
            else:
                body = schedules.LinearLR(opt, start_factor=1.0, end_factor=1.0, total_iters=1)
            if warmup > 0:
                ramp = schedules.LinearLR(opt, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
                sched = schedules.SequentialLR(opt, [ramp, body], milestones=[warmup])
            else:
                sched = body
        return opt, sched

    def _initialize(self, n_features, n_outputs, hidden, dtype, rng):
        self._net = Network(n_features, hidden, n_outputs, batch_norm=bool(self.batch_norm),
                            dropout_p=self.dropout, dtype=dtype, rng=rng)
        self.n_outputs_ = n_outputs
        self.loss_curve_ = []
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = None if not self.early_stopping else -np.inf
        self.n_iter_ = 0
        self.t_ = 0
        self.epoch_times_ = []
        # dropout masks: a function of (seed, sample count). Drawn only with dropout (scikit-learn has none), so that
        # without it the stream continues exactly as scikit-learn's: split, then one shuffle per epoch
        self._seed_base = int(rng.randint(2**31 - 1)) if self.dropout > 0 else 0

    @property
    def coefs_(self):
        check_is_fitted(self, "_net")
        return self._net.weights

    @property
    def intercepts_(self):
        check_is_fitted(self, "_net")
        return [b if b is not None else bn.beta for b, bn in zip(self._net.biases, self._net.bns)]

    # ------------------------------------------------------------------ training
    def _fit(self, X, Y, *, incremental, epochs, progress=None):
        hidden, dtype = self._check_params()
        rng = check_random_state(self.random_state)
        if self._dp is not None and not isinstance(self.random_state, (int, np.integer)):
            rng = check_random_state(self._dp.seed(rng))           # the same stream on every rank
        first = not hasattr(self, "_net") or not (self.warm_start or incremental)
        if not first and (tuple(self._net.sizes[1:-1]) != tuple(int(h) for h in hidden)
                          or self._net.dtype != dtype):
            raise ValueError(f"warm_start / partial_fit continue the fitted network (hidden_layer_sizes "
                             f"{tuple(self._net.sizes[1:-1])}, dtype {self._net.dtype}); got hidden_layer_sizes "
                             f"{self.hidden_layer_sizes!r}, dtype {dtype}. Set warm_start=False to start afresh.")
        if first:
            self._initialize(X.shape[1], Y.shape[1] if Y.ndim == 2 else int(self._n_classes()), hidden, dtype, rng)
        X_val = Y_val = None
        if self._solver == "lbfgs":                 # full batch, as scikit-learn's solver="lbfgs" (_solvers.py)
            with self._thread_limits(X.shape[0]):
                fit_lbfgs(self, kernel_input(np.asarray(X), dtype),
                          kernel_input(np.asarray(Y), np.intp if self._is_classifier() else dtype))
            self.best_loss_ = min(self.loss_curve_, default=np.inf)
            return self
        if self.early_stopping and not incremental:
            # scikit-learn's split: the same RandomState (after the initial weights), stratified for a binary target
            # only (scikit-learn stratifies when its binarized target has one column; multiclass is not stratified)
            stratify = Y if self._is_classifier() and self.n_outputs_ == 2 and len(np.unique(Y)) > 1 else None
            X, X_val, Y, Y_val = train_test_split(X, Y, test_size=self.validation_fraction, random_state=rng,
                                                  stratify=stratify)
        X = kernel_input(np.asarray(X), dtype)
        Y = kernel_input(np.asarray(Y), np.intp if self._is_classifier() else dtype)
        n = X.shape[0]
        batch = min(self.batch_size, n)
        steps_per_epoch = -(-n // batch)
        if first or not incremental or getattr(self, "_opt", None) is None:   # every fit() starts afresh
            self._opt, self._sched = self._make_optimizer(self._net.params, self.max_iter * steps_per_epoch,
                                                          steps_per_epoch)
        stopper = EarlyStopping(self.n_iter_no_change, min_delta=self.tol, mode="max", restore_best=True) \
            if X_val is not None else None
        with self._thread_limits(batch):
            self._epochs(X, Y, (X_val, Y_val), batch, epochs, incremental, stopper, progress, rng)
        self.best_loss_ = min(self.loss_curve_, default=np.inf)
        return self

    def _thread_limits(self, batch):
        """BLAS and fastopt's OpenMP team never both at full width during a fit (see _threads.py)."""
        return training_threads(self._net.sizes, batch)

    def _epochs(self, X, Y, validation, batch, epochs, incremental, stopper, progress, rng):
        """The training loop: one pass of minibatches per epoch (``_batches``), then the loss curve, early stopping
        and progress reporting. Ctrl-C stops it after the step in flight (see _interrupt.py)."""
        order = np.arange(X.shape[0])
        buffers = (np.empty((batch, X.shape[1]), X.dtype), np.empty((batch,) + Y.shape[1:], Y.dtype),
                   np.empty((batch, self.n_outputs_), X.dtype))
        loss_stopper_best, no_improve = np.inf, 0
        with deferred_interrupt() as interrupt:
            for epoch in range(epochs):
                t0 = time.perf_counter()
                if self.shuffle:
                    rng.shuffle(order)
                total, complete = self._batches(X, Y, order, buffers, interrupt)
                if self._dp is not None:
                    total = self._dp.total(total)
                    self._dp.sync_running_stats(self._net)
                if not complete:
                    self._interrupted(stopper)
                    return
                self.n_iter_ += 1
                self.loss_curve_.append(total / X.shape[0])
                self.epoch_times_.append(time.perf_counter() - t0)
                info = {"loss": self.loss_curve_[-1]}
                if stopper is not None:
                    info["val_score"] = score = self._score_array(*validation)
                    self.validation_scores_.append(score)
                    self.best_validation_score_ = max(self.best_validation_score_, score)
                    stop = stopper.step(score, self._net.state_arrays())
                else:
                    no_improve = no_improve + 1 if self.loss_curve_[-1] > loss_stopper_best - self.tol else 0
                    loss_stopper_best = min(loss_stopper_best, self.loss_curve_[-1])
                    stop = not incremental and no_improve >= self.n_iter_no_change
                if progress is not None:
                    progress(epoch, info)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_curve_[-1]:.8f}"
                          + (f", validation score = {info['val_score']:.4f}" if "val_score" in info else ""))
                if interrupt.stop:
                    self._interrupted(stopper)
                    return
                if stop:
                    return
        if not incremental and epochs == self.max_iter and self.max_iter > 1 and stopper is None:
            warnings.warn(f"Stochastic optimizer: maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)

    def _batches(self, X, Y, order, buffers, interrupt):
        """One epoch's minibatches in ``order``, gathered into reused ``buffers``: forward, loss, backward,
        penalties, clipping, one optimizer step and one lr schedule step each. Returns (summed loss, whether every
        batch ran): it stops early, after a complete step, once ``interrupt.stop`` is set."""
        with _stepping(self._opt):
            return self._batches_stepping(X, Y, order, buffers, interrupt)

    def _batches_stepping(self, X, Y, order, buffers, interrupt):
        opt, sched, net, dp = self._opt, self._sched, self._net, self._dp
        n, batch = X.shape[0], buffers[0].shape[0]
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            m = idx.shape[0]
            if self.batch_norm and n > 1 and (m == 1 if dp is None else m // dp.size < 2):
                continue                         # batch norm needs two samples (per rank); seen next epoch
            if dp is not None:
                idx = dp.rows(idx)               # this rank's rows of the global batch (_data_parallel.py)
            loss = self._forward_backward(X, Y, idx, m, buffers)
            if dp is not None:
                dp.reduce_grads(net.grads)
            l1, l2 = self._penalties(m)
            if l1 or l2:
                loss += add_penalty_grad_(net.weight_grads, net.weights, l1, l2)
            if self.clip_norm is not None:
                clip_grad_norm_(net.grads, self.clip_norm)
            opt.step(net.grads)
            if sched is not None:
                sched.step()
            total += loss * idx.shape[0]
            self.t_ += m
            if interrupt.stop and start + batch < n:
                return total, False
        return total, True

    def _penalties(self, m):
        """(l1, l2) for a batch of ``m`` samples: as given (``penalty_scaling="none"``: added to the batch's mean
        loss), or divided by ``m`` (``"batch"``: scikit-learn's ``alpha``, loss += 0.5 * alpha * ||W||^2 / m and
        grad += alpha * W / m, m the batch's length, the last partial batch's included)."""
        l1, l2 = float(self.l1), float(self.l2)
        if self.penalty_scaling == "batch":
            l1, l2 = l1 / m, l2 / m
        return l1, l2

    def _forward_backward(self, X, Y, idx, m, buffers):
        """Forward and backward on rows ``idx`` of a batch of ``m`` rows (fewer under ``comm``: the gradient is
        then scaled by len(idx) / m, see _data_parallel.py); returns the mean loss over ``idx``."""
        net = self._net
        Xb_buf, Yb_buf, grad_buf = buffers
        k = idx.shape[0]
        if k == 0:
            for g in net.grads:
                g.fill(0)
            return 0.0
        # mode="clip": idx is a slice of a permutation of X's rows, always in range; the default "raise" gathers
        # into a temporary first and copies it into out (a second pass over the batch)
        Xb = np.take(X, idx, axis=0, out=Xb_buf[:k], mode="clip")
        Yb = np.take(Y, idx, axis=0, out=Yb_buf[:k], mode="clip")
        seed = self._seed_base + self.t_ + (0 if self._dp is None else self._dp.rank * m)
        out = net.forward(Xb, training=True, seed=seed)
        loss, d_out = self._loss(out, Yb, grad_buf[:k])
        if k != m:
            d_out *= d_out.dtype.type(k / m)
        net.backward(d_out, seed=seed)
        return loss

    def _interrupted(self, stopper):
        """After Ctrl-C: the epoch in flight is not recorded (``n_iter_``, ``loss_curve_`` count complete epochs;
        ``t_`` counts the samples of every complete step); with early stopping the best weights seen are restored,
        as when it stops by itself."""
        restore = stopper is not None and stopper.best_params is not None
        warnings.warn(f"Training interrupted by user after {self.t_} samples ({self.n_iter_} complete epochs); "
                      "the model holds the weights and optimizer state of its last complete step"
                      + (", with the best validation weights restored" if restore else ""), UserWarning, stacklevel=4)
        if restore:
            stopper.restore(self._net.state_arrays())

    def _predict_raw(self, X):
        check_is_fitted(self, "_net")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        X = kernel_input(np.asarray(X), self._net.dtype)
        out = np.empty((X.shape[0], self.n_outputs_), self._net.dtype)
        step = 4096
        for s in range(0, X.shape[0], step):
            out[s:s + step] = self._net.forward(X[s:s + step], training=False)
        return out

    def _is_classifier(self):
        return False

    def _check_stochastic(self):
        """partial_fit exists for the stochastic solvers only (scikit-learn's rule: not for lbfgs)."""
        try:
            lbfgs = solver_name(self.optimizer) == "lbfgs"
        except ValueError:
            return True                           # a bad optimizer: partial_fit exists and says so when called
        if lbfgs:
            raise AttributeError("partial_fit is only available for stochastic optimizers; lbfgs is not stochastic")
        return True

    def __getstate__(self):
        """The fitted network pickles; the optimizer and schedule do not (partial_fit after unpickling starts a
        fresh optimizer, fit always does)."""
        state = super().__getstate__()
        state.pop("_opt", None)
        state.pop("_sched", None)
        state.pop("_dp", None)
        return state


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier (softmax cross-entropy), trained with fastopt.

    Parameters (beyond scikit-learn's ``MLPClassifier`` names where they exist): ``batch_norm`` (batch norm
    + fused ReLU after every hidden layer), ``dropout`` (rate after every hidden layer), ``optimizer`` (the
    lower-case name of a solver, the keys of ``fastopt.estimators._mlp.SOLVERS``: every element-wise optimizer
    of ``fastopt.optim.OPTIMIZERS``, "adafactor", "muon" (Muon on the weight matrices, AdamW on the rest) and
    "lbfgs" (full batch, as scikit-learn's; no partial_fit; ``progress`` is not called), see _solvers.py; or a
    fastopt optimizer class) with ``optimizer_params`` (its hyperparameters), ``learning_rate``, ``lr_schedule``
    ("constant", "cosine", "linear", "onecycle"; stepped per batch) with ``warmup_epochs`` (linear warm-up),
    ``l1``/``l2`` (penalty l1 * sum|W| + l2 / 2 * sum W^2 on weights, added to each batch's mean loss) with
    ``penalty_scaling`` ("none"; "batch": divided by the batch's sample count, scikit-learn's ``alpha``, so that
    ``l2=alpha`` is scikit-learn's penalty), ``clip_norm`` (global gradient norm
    clipping), ``early_stopping`` on a stratified ``validation_fraction`` (accuracy; the best weights are
    restored), ``warm_start`` (continue from the fitted weights: fine-tuning), ``dtype`` (float32 or float64),
    ``comm`` (an mpi4py communicator: data-parallel fitting, each rank on its rows of every batch of
    ``batch_size`` rows, the model the same on every rank; see _data_parallel.py; None: one process).

    Same random_state, same start as scikit-learn's ``MLPClassifier`` / ``MLPRegressor``: for an int (or a
    RandomState in the same state) ``random_state``, the initial weights are scikit-learn's (per layer
    ``uniform(-b, b, (fan_in, fan_out))`` then ``uniform(-b, b, fan_out)``, b = sqrt(6 / (fan_in + fan_out)), drawn
    in float64 and cast to ``dtype``), the early-stopping split is scikit-learn's (``train_test_split`` on the same
    RandomState, stratified only for a binary target, as scikit-learn's), and each epoch's minibatch order is
    scikit-learn's (one shuffle of the previous order per epoch, consecutive batches of ``batch_size``, the last one
    partial). With ``optimizer="adam"``, ``optimizer_params={"eps_placement": "sklearn"}``,
    ``penalty_scaling="batch"``, ``dtype="float64"`` and otherwise scikit-learn's hyperparameters (``l2`` =
    ``alpha``, ``learning_rate`` = ``learning_rate_init``, lr_schedule "constant", no batch norm, dropout or
    clipping) a fit follows scikit-learn's trajectory up to float rounding (relative 1e-16 after 3 epochs on
    digits, ``tests/test_estimators.py``); in float32 the rounding of the two grows to ~1e-7 relative in 3 epochs.
    Exceptions: a binary classifier has 2 softmax outputs where scikit-learn has 1 logistic output (the hidden
    layers' initial weights agree, the output layer's and then the trajectory do not); ``dropout > 0`` draws one
    dropout seed after the weights, which shifts the split and the shuffles; ``comm`` with a non-int
    ``random_state`` draws the shared seed first. The stopping rules differ: with ``n_iter_no_change`` = n,
    fastopt stops after n epochs whose score (validation accuracy, or the training loss without early stopping) does
    not beat the best by more than ``tol``, scikit-learn after n + 1 epochs below best + tol (a tie with tol=0
    resets its count), and scikit-learn restores the best validation weights at max_iter too, fastopt when it stops.

    Fitted attributes: ``classes_``, ``coefs_``, ``intercepts_``, ``loss_curve_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_``, ``t_``, ``epoch_times_``, ``n_features_in_``, ``n_outputs_``.

    Ctrl-C during ``fit`` on the main thread stops after the step in flight and returns the model with a warning
    (weights, optimizer and schedule state from the same step; the best weights restored under early stopping);
    a second Ctrl-C raises ``KeyboardInterrupt`` at once.
    """

    def _is_classifier(self):
        return True

    def _n_classes(self):
        return len(self.classes_)

    def _loss(self, logits, y, grad_out):
        """Softmax cross-entropy, the mean over rows (y: the encoder's labels, int64)."""
        return softmax_cross_entropy(logits, y, grad_out=grad_out)

    def _score_array(self, X, y):
        return float(np.mean(np.argmax(self._net.forward(X, training=False), axis=1) == y))

    def _prepare(self, X, y, *, reset, classes=None):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32))
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if type_of_target(y) == "multilabel-indicator":
            raise ValueError("multilabel targets are not supported")
        if reset:
            self._encoder = LabelEncoder().fit(classes if classes is not None else y)
            self.classes_ = self._encoder.classes_
        elif not np.all(np.isin(np.unique(y), self.classes_)):
            raise ValueError(f"y has labels not in classes_ {self.classes_.tolist()}")
        return X, self._encoder.transform(y).astype(np.intp)

    def fit(self, X, y, progress=None):
        """Trains for up to ``max_iter`` epochs (``progress(epoch, info)``, if given, is called after each)."""
        reset = not (self.warm_start and hasattr(self, "_net"))
        X, y = self._prepare(X, y, reset=reset)
        if len(self.classes_) < 2 and reset:
            raise ValueError("MLPClassifier needs samples of at least 2 classes in the data, but the data "
                             f"contains only one class: {self.classes_[0]!r} (1 class)")
        return self._fit(X, y, incremental=False, epochs=self.max_iter, progress=progress)

    @available_if(_BaseMLP._check_stochastic)
    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y); ``classes`` is required at the first call."""
        first = not hasattr(self, "_net")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._prepare(X, y, reset=first, classes=classes)
        return self._fit(X, y, incremental=not first, epochs=1)

    def predict_proba(self, X):
        logits = self._predict_raw(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        raw = self._predict_raw(X)
        return self.classes_[np.argmax(raw, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor (squared error: loss = mean over samples and outputs of (f(x) - y)^2 / 2),
    trained with fastopt. Parameters and attributes as :class:`MLPClassifier` (no ``classes_``; early stopping
    monitors R^2 on the validation fraction)."""

    def _n_classes(self):
        return 1

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True        # y of shape (n, k) trains k outputs
        return tags

    def _loss(self, out, y, grad_out):
        loss, grad = mse(out, y, grad_out=grad_out)
        grad *= 0.5
        return 0.5 * loss, grad

    def _score_array(self, X, Y):
        pred = self._net.forward(X, training=False).astype(np.float64)
        ss_res = ((Y - pred) ** 2).sum()
        ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum()
        return float(1 - ss_res / ss_tot) if ss_tot > 0 else 0.0

    def _prepare(self, X, y, *, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=True)
        self._y_1d = y.ndim == 1 if reset else self._y_1d
        return X, y.reshape(len(y), -1)

    def fit(self, X, y, progress=None):
        reset = not (self.warm_start and hasattr(self, "_net"))
        X, Y = self._prepare(X, y, reset=reset)
        return self._fit(X, Y, incremental=False, epochs=self.max_iter, progress=progress)

    @available_if(_BaseMLP._check_stochastic)
    def partial_fit(self, X, y):
        first = not hasattr(self, "_net")
        X, Y = self._prepare(X, y, reset=first)
        return self._fit(X, Y, incremental=not first, epochs=1)

    def predict(self, X):
        """Predictions as float64 (scikit-learn's convention for regressors), whatever the training dtype."""
        out = self._predict_raw(X).astype(np.float64)
        return out.ravel() if self._y_1d else out
