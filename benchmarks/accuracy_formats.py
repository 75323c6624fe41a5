"""Accuracy of fastopt's low-precision optimizer-state formats (issue 12, scope item 6): float32 state (the
baseline, ``state_dtype=None``) against ``"bfloat16"`` (rounded to nearest, and stochastically: ``"bfloat16-sr"``,
``compensation="stochastic"``), ``"int8"`` and ``"int4"``; and bfloat16 params.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/accuracy_formats.py [--quick] [--plot PATH]
        [--seeds 5] [--epochs 30] [--steps 10000]

Every format runs twice: with the default ``min_quantized_size`` (4096: smaller tensors keep float32 state, so on
these small models only the largest tensor is stored in the format) and with ``min_quantized_size=0`` (every
tensor in the format: the stress test). float32 state does not depend on the option and runs once.

1. Digits MLP: ``fastopt.estimators.MLPClassifier`` (64-256-10, ReLU, softmax cross-entropy, minibatch 64, a
   fixed number of epochs, no L2 penalty, no early stopping; the format passed through ``optimizer_params``) on
   scikit-learn's digits, standardized, one fixed stratified 75/25 split. Adam (lr 1e-3), AdamW (lr 1e-3, its
   default weight_decay 1e-2) and SGD with momentum 0.9 (lr 1e-2), each over ``--seeds`` seeds (the seed sets the
   initialization and the batch order; float32 and every format see the same ones). Measured: test accuracy
   (``accuracy_score``) and the final training loss (``log_loss`` of the fitted model on the training set), mean
   and std over the seeds, and the difference of the means to float32's. Target: bfloat16 and int8 within 0.5
   points of float32's accuracy.
2. Logistic regression: multinomial (softmax), ``--steps`` minibatch (128) Adam steps from zero (lr 1e-3, L2
   ``weight_decay`` 1e-2: regularized, and 1e-3: weakly, it overfits) on a ``make_classification`` set of
   10,000 x 512, 10 classes (standardized, fixed stratified 75/25 split). The weights are 512 x 10 = 5,120
   elements: stored in the format at the default ``min_quantized_size`` too (min_quantized_size=0 adds the 10
   biases). Every format sees the same batches. Measured: the final training loss (``log_loss`` of the softmax
   probabilities, the data term without the penalty) and its relative difference to float32's; the test loss
   beside it. Target: within 1% of float32's final loss.
3. bfloat16 parameters: least squares ``f(w) = ||X w - y||^2 / 2n`` (X 2048 x 512 of N(0, 1), y = X w_true +
   0.1 noise), ``--lsq-steps`` full-batch steps from w = 0 of SGD (lr 0.3) and Adam (lr 1e-2), float32 state,
   with w a float32 array (the baseline) or an ``ml_dtypes.bfloat16`` one stored with ``compensation="none"``
   (round to nearest: an update under half an ulp of w is lost), ``"kahan"`` or ``"stochastic"``. Measured: the
   excess loss ``f(w) - f(w*)`` (w* the float64 least-squares solution) along the way and at the end, against
   float32 params', and where plain rounding stalls (the first 1% of the steps after which the loss no longer
   moves).

Prints Markdown tables; ``--plot PATH`` also draws the differences to float32 (matplotlib). ``--quick``: one seed,
3 epochs, 200 steps, a smoke run of seconds (its numbers mean nothing).
"""
import argparse
import sys
import time
import warnings

import numpy as np
from scipy.special import softmax
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import fastopt
from fastopt.estimators import MLPClassifier
from fastopt.losses import softmax_cross_entropy

FORMATS = ("bfloat16", "bfloat16-sr", "int8", "int4")   # against float32 state (state_dtype=None)
MIN_SIZES = (4096, 0)                           # the default min_quantized_size, then every tensor in the format
LOGISTIC_WEIGHT_DECAYS = (1e-2, 1e-3)           # part 2: regularized, then weakly (it overfits)
TARGETS = {"accuracy_points": 0.5, "loss_relative": 0.01}
# optimizer name in the table -> (MLPClassifier's optimizer, learning rate, further optimizer options)
MLP_OPTIMIZERS = {"Adam": ("adam", 1e-3, {}), "AdamW": ("adamw", 1e-3, {}),
                  "SGD m=0.9": ("sgd", 1e-2, {"momentum": 0.9})}
# part 3: optimizer -> (class, options); the runs: float32 params (None), then bfloat16 ones by compensation
LSQ_OPTIMIZERS = {"SGD": (fastopt.optim.SGD, dict(lr=0.3)), "Adam": (fastopt.optim.Adam, dict(lr=1e-2))}
LSQ_RUNS = (None, "none", "kahan", "stochastic")


def settings():
    """(state_dtype, min_quantized_size) of every run: float32 once, then each format at each size."""
    return [(None, MIN_SIZES[0])] + [(fmt, size) for size in MIN_SIZES for fmt in FORMATS]


def label(fmt):
    return "float32" if fmt is None else fmt


def format_options(fmt):
    """The optimizer options of a format of FORMATS: "bfloat16-sr" is bfloat16 state rounded stochastically
    (``compensation="stochastic"``), the others round to nearest."""
    if fmt == "bfloat16-sr":
        return dict(state_dtype="bfloat16", compensation="stochastic")
    return dict(state_dtype=fmt)


def split(X, y):
    """The fixed stratified 75/25 split, standardized on the training part."""
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


# ---------------------------------------------------------------------------------------- part 1: digits MLP
def fit_mlp(data, opt_name, fmt, min_size, seed, epochs):
    """(test accuracy, final training log loss) of one MLPClassifier fit."""
    X_tr, X_te, y_tr, y_te = data
    name, lr, extra = MLP_OPTIMIZERS[opt_name]
    model = MLPClassifier(hidden_layer_sizes=(256,), optimizer=name, learning_rate=lr, l2=0.0, batch_size=64,
                          max_iter=epochs, n_iter_no_change=epochs + 1, tol=0.0, random_state=seed,
                          optimizer_params=dict(extra, min_quantized_size=min_size, **format_options(fmt)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)       # the epochs are fixed on purpose
        model.fit(X_tr, y_tr)
    return (accuracy_score(y_te, model.predict(X_te)),
            log_loss(y_tr, model.predict_proba(X_tr), labels=model.classes_))


def run_mlp(seeds, epochs):
    """{(optimizer, state_dtype, min_size): array (seeds, 2) of (accuracy, loss)}."""
    data = split(*load_digits(return_X_y=True))
    return {(opt, fmt, size): np.array([fit_mlp(data, opt, fmt, size, seed, epochs) for seed in range(seeds)])
            for opt in MLP_OPTIMIZERS for fmt, size in settings()}


def mlp_table(results):
    """Markdown: accuracy and loss per optimizer and format, and the differences to float32 (the target's column
    says whether the mean accuracy is within 0.5 points of float32's, either way)."""
    lines = ["| optimizer | state | min_quantized_size | test accuracy % | vs float32 (points) | within 0.5 | "
             "final train loss | vs float32 |",
             "|---|---|---|---|---|---|---|---|"]
    for (opt, fmt, size), r in results.items():
        base = results[(opt, None, MIN_SIZES[0])]
        acc, loss = 100 * r[:, 0], r[:, 1]
        d_acc = acc.mean() - 100 * base[:, 0].mean()
        d_loss = loss.mean() / base[:, 1].mean() - 1
        ok = "-" if fmt is None else ("yes" if abs(d_acc) <= TARGETS["accuracy_points"] else "**no**")
        lines.append(f"| {opt} | {label(fmt)} | {'-' if fmt is None else size} | {acc.mean():.2f} ± "
                     f"{acc.std():.2f} | {'-' if fmt is None else f'{d_acc:+.2f}'} | {ok} | {loss.mean():.4f} ± "
                     f"{loss.std():.4f} | {'-' if fmt is None else f'{100 * d_loss:+.1f}%'} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- part 2: logistic regression
def logistic_data():
    X, y = make_classification(n_samples=10_000, n_features=512, n_informative=32, n_redundant=0, n_classes=10,
                               n_clusters_per_class=1, flip_y=0.05, class_sep=2.0, random_state=0)
    X_tr, X_te, y_tr, y_te = split(X, y)
    return X_tr.astype(np.float32), X_te.astype(np.float32), y_tr, y_te


def fit_logistic(data, weight_decay, fmt, min_size, steps, batch=128):
    """(final training log loss, test log loss) after ``steps`` minibatch Adam steps from W = 0."""
    X_tr, X_te, y_tr, y_te = data
    classes = np.unique(y_tr)
    W, b = np.zeros((X_tr.shape[1], len(classes)), np.float32), np.zeros(len(classes), np.float32)
    opt = fastopt.optim.Adam([W, b], lr=1e-3, weight_decay=weight_decay, min_quantized_size=min_size,
                             **format_options(fmt))
    rng = np.random.default_rng(0)                    # the same batches for every format
    order, pos = rng.permutation(len(y_tr)), 0
    for _ in range(steps):
        if pos + batch > len(order):
            order, pos = rng.permutation(len(y_tr)), 0
        idx = order[pos:pos + batch]
        pos += batch
        Xb = X_tr[idx]
        _, grad = softmax_cross_entropy(Xb @ W + b, y_tr[idx])
        opt.step([Xb.T @ grad, grad.sum(axis=0)])
    return tuple(log_loss(y, softmax(X @ W + b, axis=1), labels=classes)
                 for X, y in ((X_tr, y_tr), (X_te, y_te)))


def run_logistic(steps):
    """{(weight_decay, state_dtype, min_size): (train loss, test loss)}."""
    data = logistic_data()
    return {(wd, fmt, size): fit_logistic(data, wd, fmt, size, steps)
            for wd in LOGISTIC_WEIGHT_DECAYS for fmt, size in settings()}


def logistic_table(results):
    lines = ["| weight_decay | state | min_quantized_size | final train loss | vs float32 | within 1% | test loss |",
             "|---|---|---|---|---|---|---|"]
    for (wd, fmt, size), (train, test) in results.items():
        rel = train / results[(wd, None, MIN_SIZES[0])][0] - 1
        ok = "-" if fmt is None else ("yes" if abs(rel) <= TARGETS["loss_relative"] else "**no**")
        lines.append(f"| {wd:g} | {label(fmt)} | {'-' if fmt is None else size} | {train:.5f} | "
                     f"{'-' if fmt is None else f'{100 * rel:+.2f}%'} | {ok} | {test:.4f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------- part 3: bfloat16 params, least squares
def lsq_data(n=2048, d=512):
    """X (n x d, float32, N(0, 1)), y = X w_true + 0.1 noise (w_true N(0, 1)), and the float64 optimum w*."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X.astype(np.float64) @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)).astype(np.float32)
    w_star = np.linalg.lstsq(X.astype(np.float64), y.astype(np.float64), rcond=None)[0]
    return X, y, w_star


def _lsq_loss(X, y, w):
    r = X.astype(np.float64) @ np.asarray(w, np.float64) - y
    return 0.5 * float(r @ r) / len(y)


def fit_lsq(data, opt_name, compensation, steps):
    """Excess loss f(w) - f(w*) every 1% of ``steps`` full-batch steps from w = 0, f = ||X w - y||^2 / 2n; w a
    float32 array (compensation None) or a bfloat16 one stored by ``compensation``; float32 state either way."""
    from ml_dtypes import bfloat16
    X, y, w_star = data
    best = _lsq_loss(X, y, w_star)
    cls, kwargs = LSQ_OPTIMIZERS[opt_name]
    w = np.zeros(X.shape[1], np.float32 if compensation is None else bfloat16)
    extra = {} if compensation is None else dict(compensation=compensation)
    opt = cls([w], state_dtype="float32", **kwargs, **extra)
    curve, every = [], max(1, steps // 100)
    for t in range(steps):
        w32 = w.astype(np.float32)
        opt.step([X.T @ (X @ w32 - y) / np.float32(len(y))])
        if (t + 1) % every == 0:
            curve.append(_lsq_loss(X, y, w) - best)
    return np.array(curve)


def run_lsq(steps):
    """({(optimizer, compensation or None): excess-loss curve}, {param dtype name: the excess loss of w* rounded
    to it, the least a param of that dtype can reach})."""
    from ml_dtypes import bfloat16
    data = lsq_data()
    X, y, w_star = data
    floors = {name: _lsq_loss(X, y, w_star.astype(dtype)) - _lsq_loss(X, y, w_star)
              for name, dtype in (("float32", np.float32), ("bfloat16", bfloat16))}
    return {(opt, comp): fit_lsq(data, opt, comp, steps) for opt in LSQ_OPTIMIZERS for comp in LSQ_RUNS}, floors


def lsq_table(results, floors):
    """Markdown: the final excess loss of each run, against the floor of its param dtype (w* rounded to it), and
    where the loss stopped moving (a relative change under 1e-6 over 1% of the steps while above twice the
    floor)."""
    lines = ["| optimizer | params | compensation | final excess loss | floor of the dtype | x floor | stalls at |",
             "|---|---|---|---|---|---|---|"]
    for (opt, comp), curve in results.items():
        dtype = "float32" if comp is None else "bfloat16"
        floor = floors[dtype]
        stalled = np.flatnonzero((np.abs(np.diff(curve)) <= 1e-6 * curve[1:]) & (curve[1:] > 2 * floor))
        stall = f"{stalled[0] + 2}% of the steps" if len(stalled) else "-"
        lines.append(f"| {opt} | {dtype} | {comp or '-'} | {curve[-1]:.3e} | {floor:.3e} | "
                     f"{curve[-1] / floor:.2f} | {stall} |")
    return "\n".join(lines)


def _bars(ax, groups, values, band, unit, ylabel, title):
    """Grouped bars, one per format in each group: values[fmt] = (means, stds or None); the target's band (None:
    no target) grey."""
    width = 0.8 / len(FORMATS)
    x = np.arange(len(groups))
    for i, fmt in enumerate(FORMATS):
        means, stds = values[fmt]
        ax.bar(x + (i - (len(FORMATS) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=fmt)
    if band is not None:
        ax.axhspan(-band, band, color="0.9", zorder=0, label=f"target ±{band:g}{unit}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def _curves(ax, results, opt):
    """Part 3: the excess loss along the steps of ``opt``, one line per param format (log scale)."""
    for comp in LSQ_RUNS:
        curve = results[(opt, comp)]
        ax.semilogy(np.linspace(1, 100, len(curve)), curve, label="float32 params" if comp is None else
                    f"bfloat16, {comp}")
    ax.set_xlabel("% of the steps")
    ax.set_ylabel("f(w) - f(w*)")
    ax.set_title(f"Least squares, {opt}: bfloat16 params", fontsize=10)
    ax.legend(fontsize=7)


def plot(path, mlp, logistic, lsq):
    """Digits MLP (per min_quantized_size): test accuracy's difference to float32 (points; error bars: std over
    the seeds of the paired differences) and the final train loss's (%); logistic regression: the final train
    loss's difference (%); least squares: the excess loss along the way per param format."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(20, 7.5))
    grid = fig.add_gridspec(2, 4)
    for row, opt in enumerate(LSQ_OPTIMIZERS):
        _curves(fig.add_subplot(grid[row, 3]), lsq, opt)
    opts = list(MLP_OPTIMIZERS)
    for col, size in enumerate(MIN_SIZES):
        def paired(fmt, metric, scale):
            d = [scale(mlp[(opt, fmt, size)][:, metric], mlp[(opt, None, MIN_SIZES[0])][:, metric]) for opt in opts]
            return [v.mean() for v in d], [v.std() for v in d]
        acc = {fmt: paired(fmt, 0, lambda a, b: 100 * (a - b)) for fmt in FORMATS}
        loss = {fmt: paired(fmt, 1, lambda a, b: 100 * (a / b - 1)) for fmt in FORMATS}
        _bars(fig.add_subplot(grid[0, col]), opts, acc, TARGETS["accuracy_points"], " points",
              "test accuracy - float32's (points)", f"Digits MLP, min_quantized_size={size}: test accuracy")
        _bars(fig.add_subplot(grid[1, col]), opts, loss, None, "", "final train loss vs float32's (%)",
              f"Digits MLP, min_quantized_size={size}: final train loss")
    groups = [(wd, size) for wd in LOGISTIC_WEIGHT_DECAYS for size in MIN_SIZES]
    rel = {fmt: ([100 * (logistic[(wd, fmt, size)][0] / logistic[(wd, None, MIN_SIZES[0])][0] - 1)
                  for wd, size in groups], None) for fmt in FORMATS}
    _bars(fig.add_subplot(grid[:, 2]), [f"wd {wd:g}\nmin size {size}" for wd, size in groups], rel,
          100 * TARGETS["loss_relative"], "%", "final train loss vs float32's (%)",
          "Logistic regression (softmax), Adam: final train loss")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None, out=sys.stdout):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=10_000, help="logistic regression's Adam steps")
    ap.add_argument("--lsq-steps", type=int, default=3000, help="part 3's least-squares steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", metavar="PATH", help="write the plot (PNG) there")
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 epochs, 200 steps (a smoke run)")
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.epochs, a.steps, a.lsq_steps = 1, 3, 200, 200
    fastopt.set_num_threads(a.threads)
    t0 = time.perf_counter()
    mlp = run_mlp(a.seeds, a.epochs)
    print(f"## Part 1: digits MLP, {a.epochs} epochs, {a.seeds} seeds (mean ± std)\n\n{mlp_table(mlp)}\n", file=out)
    logistic = run_logistic(a.steps)
    print(f"## Part 2: logistic regression, {a.steps} Adam steps\n\n{logistic_table(logistic)}\n", file=out)
    lsq, floors = run_lsq(a.lsq_steps)
    print(f"## Part 3: bfloat16 params, least squares, {a.lsq_steps} steps\n\n{lsq_table(lsq, floors)}\n",
          file=out)
    if a.plot:
        plot(a.plot, mlp, logistic, lsq)
        print(f"wrote {a.plot}", file=out)
    print(f"total {time.perf_counter() - t0:.0f} s", file=out)


if __name__ == "__main__":
    main()
