"""``python -m fastopt demo``: train an MLP with batch norm on scikit-learn's digits, the whole workflow.

Stratified train/test split; ``fastopt.estimators.MLPClassifier`` with batch norm, AdamW, a cosine schedule with
linear warm-up and early stopping on a validation fraction (best weights restored), a tqdm bar per epoch with the
loss and validation accuracy; then test accuracy, precision/recall/F1 and time per epoch; then the like-for-like
comparison with ``sklearn.neural_network.MLPClassifier`` (one hidden layer of 256, batch 64, Adam, the same
epochs) timed in the same run. ``--plot out.png`` saves loss/accuracy curves (needs matplotlib).
"""
import argparse
import sys
import time
import warnings

import numpy as np


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256], help="hidden layer sizes (default 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="save loss/accuracy curves (needs matplotlib)")
    parser.add_argument("--quick", action="store_true", help="8 epochs, for CI")
    parser.add_argument("--no-compare", action="store_true", help="skip the scikit-learn comparison")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits of each model in the comparison, alternating; the median time is reported")


def _fit_timed(model, X, y, **kwargs):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning: we ask for a fixed number of epochs
        model.fit(X, y, **kwargs)
    return time.perf_counter() - t0


def main(args):
    from sklearn.datasets import load_digits
    from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP
    from tqdm import tqdm

    import fastopt
    from fastopt.estimators import MLPClassifier

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'fastopt[plot]'", file=sys.stderr)
            return 2
    epochs = 8 if args.quick else args.epochs
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=args.seed)
    print(f"digits: {len(X_train)} train / {len(X_test)} test samples, {X.shape[1]} features, "
          f"{len(np.unique(y))} classes | fastopt {fastopt.__version__}, {fastopt.get_num_threads()} threads, "
          f"ISA {fastopt.get_isa()}")

    # 1. The showcase: batch norm + AdamW + cosine with warm-up + early stopping, with a progress bar.
    model = MLPClassifier(hidden_layer_sizes=tuple(args.hidden), batch_norm=True, optimizer="adamw",
                          optimizer_params={"weight_decay": 1e-2}, learning_rate=3e-3, lr_schedule="cosine",
                          warmup_epochs=1, early_stopping=True, validation_fraction=0.15, n_iter_no_change=8,
                          tol=0.0, batch_size=args.batch_size, max_iter=epochs, l2=0.0, random_state=args.seed)
    bar = tqdm(total=epochs, desc="fastopt MLP (batch norm, AdamW, cosine)", unit="epoch")

    def progress(epoch, info):
        bar.set_postfix(loss=f"{info['loss']:.4f}", val_acc=f"{info.get('val_score', float('nan')):.4f}")
        bar.update(1)

    seconds = _fit_timed(model, X_train, y_train, progress=progress)
    bar.close()
    pred = model.predict(X_test)
    p, r, f1, _ = precision_recall_fscore_support(y_test, pred, average="macro")
    print(f"\nstopped after {model.n_iter_} epochs (best validation accuracy "
          f"{model.best_validation_score_:.4f}, best weights restored)")
    print(f"test accuracy {accuracy_score(y_test, pred):.4f} | macro precision {p:.4f} recall {r:.4f} F1 {f1:.4f}")
    print(f"training {seconds:.3f} s, {1e3 * np.median(model.epoch_times_):.1f} ms per epoch (median)")
    print(classification_report(y_test, pred, digits=4))

    # 2. Like for like: one hidden layer, batch 64, Adam, fixed epochs, both libraries, same run.
    rows = []
    if not args.no_compare:
        hidden = tuple(args.hidden)
        ours = MLPClassifier(hidden_layer_sizes=hidden, optimizer="adam", learning_rate=1e-3,
                             batch_size=args.batch_size, max_iter=epochs, n_iter_no_change=epochs + 1,
                             l2=1e-4, random_state=args.seed)
        theirs = SkMLP(hidden_layer_sizes=hidden, solver="adam", learning_rate_init=1e-3,
                       batch_size=args.batch_size, max_iter=epochs, n_iter_no_change=epochs + 1, alpha=1e-4,
                       random_state=args.seed)
        times = {"fastopt MLPClassifier": [], "sklearn MLPClassifier": []}
        for _ in range(max(1, args.repeats)):          # alternating fits: the machine's speed drifts
            for name, est in zip(times, (ours, theirs)):
                times[name].append(_fit_timed(est, X_train, y_train))
        for name, est in zip(times, (ours, theirs)):
            rows.append((name, float(np.median(times[name])), accuracy_score(y_test, est.predict(X_test)),
                         est.n_iter_))
        print(f"same architecture {hidden}, batch {args.batch_size}, Adam, {epochs} epochs "
              f"(median of {max(1, args.repeats)} fits each):")
        for name, t, acc, n_iter in rows:
            print(f"  {name:<22} {t:7.3f} s ({1e3 * t / n_iter:6.2f} ms/epoch)  test accuracy {acc:.4f}")
        print(f"  fastopt is {rows[1][1] / rows[0][1]:.1f}x faster")

    if args.plot:
        _plot(args.plot, model)
        print(f"wrote {args.plot}")
    return 0


def _plot(path, model):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = np.arange(1, len(model.loss_curve_) + 1)
    ax[0].plot(epochs, model.loss_curve_, marker="o")
    ax[0].set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    if model.validation_scores_:
        ax[1].plot(epochs, model.validation_scores_, marker="o", color="tab:green")
    ax[1].set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
    for a in ax:
        a.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
