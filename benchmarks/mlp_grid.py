"""fastopt's MLPClassifier against scikit-learn's over the grid of issue 16, cell by cell.

    python benchmarks/mlp_grid.py --cells 'digits:512x512:b32:*' 'synthetic:256:b128:float32'
    python benchmarks/mlp_grid.py --list                 # the cells
    python benchmarks/mlp_grid.py --pools both ...      # fastopt without the thread policy (both pools at full width)
    python benchmarks/mlp_grid.py --profile ...         # where a fastopt fit's time goes, per cell
    python benchmarks/mlp_grid.py --rules fastopt ...   # fastopt with its own L2 scaling and Adam eps
    python benchmarks/mlp_grid.py --floor ...           # also the cell's matmuls alone: the least a fit can take

A cell is ``dataset:hidden:bBATCH:dtype`` (hidden sizes joined by x); ``--cells`` takes fnmatch patterns. Each cell
fits the same network (Adam, lr 1e-3, L2 1e-4, fixed epochs, no early stopping, the same random_state: the same
initial weights and minibatch order, and scikit-learn's L2 scaling and Adam eps placement) with both libraries,
``--rounds`` alternating rounds (the machine's speed drifts), and prints the median fit times, their ratio (sklearn / fastopt:
> 1 means fastopt is faster) and both test accuracies; the target is ratio >= 2 at accuracy within 0.5 points.
With ``--floor`` each round also times the cell's matmuls alone (``gemm_floor_seconds``): no fit on the same BLAS
can take less, so sklearn s / floor s is the largest ratio any library could reach on that cell.
Epochs are capped per dataset (``--epochs``) so that a fit stays under a minute. Unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE in the environment of a measurement run.
"""
import argparse
import contextlib
import fnmatch
import itertools
import sys
import time
import warnings

import numpy as np

HIDDEN = ((64,), (256,), (512, 512), (1024, 1024, 1024))
BATCHES = (32, 128, 512)
DTYPES = ("float32", "float64")
DATASETS = ("digits", "synthetic")
EPOCHS = {"digits": 10, "synthetic": 2}


def cell_name(dataset, hidden, batch, dtype):
    return f"{dataset}:{'x'.join(map(str, hidden))}:b{batch}:{dtype}"


def all_cells():
    return [(d, h, b, t) for d, h, b, t in itertools.product(DATASETS, HIDDEN, BATCHES, DTYPES)]


def load(dataset, n_synthetic=50_000):
    """(X_train, X_test, y_train, y_test) as float64, standardized; the synthetic set is made locally."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    if dataset == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    else:
        X, y = make_classification(n_samples=n_synthetic, n_features=128, n_informative=64, n_redundant=16,
                                   n_classes=10, n_clusters_per_class=2, class_sep=1.5, random_state=0)
        X = StandardScaler().fit_transform(X)
    return train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)


def models(hidden, batch, dtype, epochs, seed=0, rules="sklearn"):
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastopt.estimators import MLPClassifier
    common = dict(hidden_layer_sizes=hidden, batch_size=batch, max_iter=epochs, n_iter_no_change=epochs + 1,
                  random_state=seed)
    # scikit-learn's update rules (its alpha's scaling, its Adam's eps placement): with the same random_state both
    # start from the same weights and visit the same minibatches, so the fits follow nearly the same trajectory
    # (``--rules fastopt``: fastopt's defaults, l2 added to each batch's mean loss unscaled and torch's eps)
    same = dict(penalty_scaling="batch", optimizer_params={"eps_placement": "sklearn"}) if rules == "sklearn" else {}
    ours = MLPClassifier(optimizer="adam", learning_rate=1e-3, l2=1e-4, tol=0.0, dtype=dtype, **same, **common)
    theirs = SkMLP(solver="adam", learning_rate_init=1e-3, alpha=1e-4, tol=0.0, **common)
    return {"fastopt": ours, "sklearn": theirs}


def fit_seconds(model, X, y):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning: the epochs are fixed on purpose
        model.fit(X, y)
    return time.perf_counter() - t0


@contextlib.contextmanager
def pools(mode):
    """``policy``: the estimators' thread rule (fastopt/estimators/_threads.py); ``both``: no rule at all."""
    if mode == "policy":
        yield
        return
    from fastopt.estimators import _mlp
    saved = _mlp.training_threads
    _mlp.training_threads = lambda sizes, batch: contextlib.nullcontext()
    try:
        yield
    finally:
        _mlp.training_threads = saved


class _Timed:
    """A stand-in for a module (or object) whose listed functions add their wall time to ``seconds[bucket]``."""

    def __init__(self, target, names, bucket, seconds):
        self._target = target
        for name in names:
            setattr(self, name, self._wrap(getattr(target, name), bucket, seconds))

    @staticmethod
    def _wrap(fn, bucket, seconds):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[bucket] += time.perf_counter() - t0
        return timed

    def __getattr__(self, name):
        return getattr(self._target, name)


def profile_fit(cell, data, epochs):
    """One fastopt fit of the cell with its time split into: BLAS (the matmuls), the optimizer step, the other
    fastopt kernels (bias + activation, loss, penalties, dropout, batch norm, clipping) and the rest (Python,
    minibatch gathers, hand-offs between the pools). Timers wrap each call, so a pool's spin-down after a call is
    counted where it happens: in the next call's bucket or in "rest"."""
    from fastopt.estimators import _mlp, _network
    from fastopt.nn import BatchNorm
    dataset, hidden, batch, dtype = cell
    X_train, _, y_train, _ = data
    X_train = X_train.astype(dtype)
    seconds = dict.fromkeys(("blas", "optimizer step", "other kernels"), 0.0)
    model = models(hidden, batch, dtype, epochs)["fastopt"]
    make_optimizer = model._make_optimizer

    def timed_optimizer(*args):
        opt, sched = make_optimizer(*args)
        opt.step = _Timed._wrap(opt.step, "optimizer step", seconds)
        return opt, sched

    model._make_optimizer = timed_optimizer
    model._loss = _Timed._wrap(model._loss, "other kernels", seconds)
    kernels = [(_network, name) for name in ("bias_activation", "bias_activation_backward", "dropout",
                                             "dropout_backward")] + \
        [(_mlp, "add_penalty_grad_"), (_mlp, "clip_grad_norm_"), (BatchNorm, "forward"), (BatchNorm, "backward")]
    saved_np, saved_kernels = _network.np, [getattr(mod, name) for mod, name in kernels]
    _network.np = _Timed(np, ["matmul"], "blas", seconds)
    for (mod, name), fn in zip(kernels, saved_kernels):
        setattr(mod, name, _Timed._wrap(fn, "other kernels", seconds))
    try:
        total = fit_seconds(model, X_train, y_train)
    finally:
        _network.np = saved_np
        for (mod, name), fn in zip(kernels, saved_kernels):
            setattr(mod, name, fn)
    seconds["rest"] = total - sum(seconds.values())
    return total, {k: v / total for k, v in seconds.items()}


def gemm_floor_seconds(cell, X_train, n_outputs, epochs):
    """The matmuls of ``epochs`` epochs of backprop on the cell's network (``X_train``'s rows and features,
    ``n_outputs`` output units), timed alone: for every minibatch and layer l (activations A_l, deltas D_l, weights
    W_l), the forward A_l W_l, the weight gradient A_l^T D_{l+1} and, for every layer but the first, D_{l+1} W_l^T,
    into preallocated outputs (A_{l+1} stands in for D_{l+1}: same shape). Each epoch takes the faster of BLAS at
    one thread and at full width (the choice a fit could make per shape). No fit on this BLAS runs fewer flops."""
    from threadpoolctl import threadpool_limits
    _, hidden, batch, dtype = cell
    n, n_features = X_train.shape
    widths = [n_features, *hidden, n_outputs]
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(widths, widths[1:])]
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    acts = {b: [rng.standard_normal((b, w)).astype(dtype) for w in widths] for b in set(sizes)}
    deltas = {b: [np.empty((b, w), dtype) for w in widths[:-1]] for b in set(sizes)}     # D_0 never written
    grads = [np.empty_like(w) for w in weights]

    def epoch():
        t0 = time.perf_counter()
        for b in sizes:
            a, d = acts[b], deltas[b]
            for layer, w in enumerate(weights):
                np.matmul(a[layer], w, out=a[layer + 1])
            for layer in range(len(weights) - 1, -1, -1):
                np.matmul(a[layer].T, a[layer + 1], out=grads[layer])
                if layer:
                    np.matmul(a[layer + 1], weights[layer].T, out=d[layer])
        return time.perf_counter() - t0

    per_epoch = []
    for _ in range(epochs):
        with threadpool_limits(1, "blas"):
            one = epoch()
        per_epoch.append(min(one, epoch()))
    return float(sum(per_epoch))


def run_cell(cell, data, rounds, epochs, pool_mode, rules="sklearn", floor=False):
    dataset, hidden, batch, dtype = cell
    X_train, X_test, y_train, y_test = data
    X_train = X_train.astype(dtype)
    X_test = X_test.astype(dtype)
    est = models(hidden, batch, dtype, epochs, rules=rules)
    times = {name: [] for name in est}
    if floor:
        times["floor"] = []
        n_classes = len(np.unique(y_train))
        n_outputs = n_classes if n_classes > 2 else 1          # one logistic unit for two classes, as both fit
    with pools(pool_mode):
        for _ in range(rounds):
            for name, model in est.items():
                times[name].append(fit_seconds(model, X_train, y_train))
            if floor:
                times["floor"].append(gemm_floor_seconds(cell, X_train, n_outputs, epochs))
    acc = {name: float(np.mean(model.predict(X_test) == y_test)) for name, model in est.items()}
    med = {name: float(np.median(t)) for name, t in times.items()}
    ratio = med["sklearn"] / med["fastopt"]
    ok = ratio >= 2.0 and abs(acc["fastopt"] - acc["sklearn"]) <= 0.005      # the same accuracy, either way
    return dict(cell=cell_name(*cell), epochs=epochs, fastopt_s=med["fastopt"], sklearn_s=med["sklearn"],
                ratio=ratio, acc_fastopt=acc["fastopt"], acc_sklearn=acc["sklearn"], target_met=ok,
                floor_s=med.get("floor"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["*"], help="fnmatch patterns of cell names (default all)")
    parser.add_argument("--list", action="store_true", help="print the cell names and exit")
    parser.add_argument("--rounds", type=int, default=3, help="alternating fits of each library (default 3)")
    parser.add_argument("--epochs", type=int, nargs=2, metavar=("DIGITS", "SYNTHETIC"),
                        default=[EPOCHS["digits"], EPOCHS["synthetic"]], help="epochs per fit (default 10 2)")
    parser.add_argument("--pools", choices=("policy", "both"), default="policy",
                        help="'both' measures fastopt without its thread policy")
    parser.add_argument("--rules", choices=("sklearn", "fastopt"), default="sklearn",
                        help="fastopt's update rules: scikit-learn's L2 scaling and Adam eps (default) or its own")
    parser.add_argument("--floor", action="store_true",
                        help="also time each cell's matmuls alone, in the same rounds (the least a fit can take)")
    parser.add_argument("--synthetic-samples", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true",
                        help="split one fastopt fit per cell into BLAS / optimizer step / other kernels / rest")
    args = parser.parse_args(argv)
    cells = [c for c in all_cells() if any(fnmatch.fnmatch(cell_name(*c), p) for p in args.cells)]
    if args.list:
        print("\n".join(cell_name(*c) for c in cells))
        return 0
    if not cells:
        print(f"no cell matches {args.cells}; see --list", file=sys.stderr)
        return 2
    import fastopt
    print(f"fastopt {fastopt.__version__}, {fastopt.get_num_threads()} threads, pools={args.pools}, "
          f"rules={args.rules}, median of {args.rounds} alternating fits")
    if args.profile:
        print(f"{'cell':<34} {'epochs':>6} {'fastopt s':>10}  shares of the fit's time")
    else:
        floor_head = f" {'floor s':>9} {'fo/floor':>8} {'sk/floor':>8}" if args.floor else ""
        print(f"{'cell':<34} {'epochs':>6} {'fastopt s':>10} {'sklearn s':>10} {'ratio':>6} {'acc fo':>7} "
              f"{'acc sk':>7}{floor_head}  target")
    data = {}
    for cell in cells:
        if cell[0] not in data:
            data[cell[0]] = load(cell[0], args.synthetic_samples)
        epochs = args.epochs[DATASETS.index(cell[0])]
        if args.profile:
            total, parts = profile_fit(cell, data[cell[0]], epochs)
            print(f"{cell_name(*cell):<34} {epochs:>6} {total:>10.3f}  "
                  + "  ".join(f"{k} {v:6.1%}" for k, v in parts.items()), flush=True)
            continue
        r = run_cell(cell, data[cell[0]], args.rounds, epochs, args.pools, args.rules, args.floor)
        floor_cols = ""
        if args.floor:
            floor_cols = (f" {r['floor_s']:>9.3f} {r['fastopt_s'] / r['floor_s']:>7.2f}x "
                          f"{r['sklearn_s'] / r['floor_s']:>7.2f}x")
        print(f"{r['cell']:<34} {r['epochs']:>6} {r['fastopt_s']:>10.3f} {r['sklearn_s']:>10.3f} "
              f"{r['ratio']:>5.2f}x {r['acc_fastopt']:>7.4f} {r['acc_sklearn']:>7.4f}{floor_cols}  "
              f"{'met' if r['target_met'] else 'MISSED'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
