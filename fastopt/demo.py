"""``python -m fastopt demo``: train an MLP with batch norm on scikit-learn's digits, the whole workflow.

Stratified train/test split; ``fastopt.estimators.MLPClassifier`` with batch norm, AdamW, a cosine schedule with
linear warm-up and early stopping on a validation fraction (best weights restored), a tqdm bar per epoch with the
loss and validation accuracy; then test accuracy, precision/recall/F1 and time per epoch; then the like-for-like
comparison with ``sklearn.neural_network.MLPClassifier`` (one hidden layer of 256, batch 64, Adam, the same
epochs, the same random_state and scikit-learn's L2 scaling and Adam eps) and, when torch is installed, a torch MLP of the same shape with ``torch.optim.Adam``, timed in the same run:
time per epoch, test accuracy and optimizer-state memory. ``--dataset synthetic`` trains on a local
``make_classification`` set (50,000 x 128, 10 classes; ``--samples`` to change its size) instead of digits.
``--plot out.png`` saves the curves of all of them (needs matplotlib). ``mpiexec -n N fastopt demo --mpi`` trains
the showcase data-parallel on N ranks (``MLPClassifier(comm=MPI.COMM_WORLD)``, needs ``fastopt[mpi]``); rank 0
reports its time and accuracy beside the same model fitted by one process, then runs the comparison.
"""
import argparse
import os
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
    parser.add_argument("--dataset", choices=("digits", "synthetic"), default="digits",
                        help="digits (default, quick) or a local make_classification set of 50,000 x 128")
    parser.add_argument("--samples", type=int, default=50_000, help="samples of the synthetic set")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out of the comparison")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits of each model in the comparison, alternating; the median time is reported")
    parser.add_argument("--mpi", action="store_true",
                        help="under mpiexec: train the showcase data-parallel over MPI.COMM_WORLD (fastopt[mpi])")


def _fit_timed(model, X, y, **kwargs):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning: we ask for a fixed number of epochs
        model.fit(X, y, **kwargs)
    return time.perf_counter() - t0


def main(args):
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
    comm = _mpi_comm() if args.mpi else None
    if comm is not None and comm.Get_rank() != 0:
        sys.stdout = open(os.devnull, "w")        # rank 0 reports
    X, y = _load(args.dataset, args.samples, args.seed)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=args.seed)
    print(f"{args.dataset}: {len(X_train)} train / {len(X_test)} test samples, {X.shape[1]} features, "
          f"{len(np.unique(y))} classes | fastopt {fastopt.__version__}, {fastopt.get_num_threads()} threads, "
          f"ISA {fastopt.get_isa()}")

    # 1. The showcase: batch norm + AdamW + cosine with warm-up + early stopping, with a progress bar.
    showcase = dict(hidden_layer_sizes=tuple(args.hidden), batch_norm=True, optimizer="adamw",
                    optimizer_params={"weight_decay": 1e-2}, learning_rate=3e-3, lr_schedule="cosine",
                    warmup_epochs=1, early_stopping=True, validation_fraction=0.15, n_iter_no_change=8,
                    tol=0.0, batch_size=args.batch_size, max_iter=epochs, l2=0.0, random_state=args.seed)
    model = MLPClassifier(comm=comm, **showcase)
    bar = tqdm(total=epochs, desc="fastopt MLP (batch norm, AdamW, cosine)" + (
        f" on {comm.Get_size()} ranks" if comm is not None else ""), unit="epoch", file=sys.stdout)

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
    if comm is not None:
        _mpi_report(comm, MLPClassifier(**showcase), X_train, y_train, X_test, y_test, seconds,
                    accuracy_score(y_test, pred))
        if comm.Get_rank() != 0:
            return 0

    # 2. Like for like: the same network, batch, Adam and epochs in each library, same run, alternating fits.
    rows = []
    if not args.no_compare:
        rows = _compare(args, epochs, X_train, y_train, X_test, y_test)

    if args.plot:
        _plot(args.plot, model, rows)
        print(f"wrote {args.plot}")
    return 0


def _mpi_comm():
    from fastopt.distributed._comm import mpi
    return mpi().COMM_WORLD


def _mpi_report(comm, single, X_train, y_train, X_test, y_test, seconds, accuracy):
    """Rank 0 fits the same model in one process and prints both; the other ranks wait at a barrier."""
    if comm.Get_rank() == 0:
        one = _fit_timed(single, X_train, y_train)
        acc = single.score(X_test, y_test)
        print(f"data-parallel on {comm.Get_size()} ranks: training {seconds:.3f} s, test accuracy {accuracy:.4f} | "
              f"one process: training {one:.3f} s, test accuracy {acc:.4f} "
              f"({100 * (accuracy - acc):+.2f} points)")
    comm.Barrier()


def _plot(path, model, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3 if rows else 2, figsize=(13 if rows else 9, 3.4))
    epochs = np.arange(1, len(model.loss_curve_) + 1)
    ax[0].plot(epochs, model.loss_curve_, marker="o")
    ax[0].set(title="training loss (batch norm, AdamW)", xlabel="epoch", ylabel="cross-entropy")
    if model.validation_scores_:
        ax[1].plot(epochs, model.validation_scores_, marker="o", color="tab:green")
    ax[1].set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
    for row in rows:
        ax[2].plot(np.arange(1, len(row["curve"]) + 1), row["curve"], marker=".", label=row["name"])
    if rows:
        ax[2].set(title="same network, Adam: training loss", xlabel="epoch", ylabel="cross-entropy")
        ax[2].legend()
    for a in ax:
        a.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _load(dataset, samples, seed):
    """(X float32, y): digits scaled to [0, 1], or the synthetic make_classification set, standardized."""
    from sklearn.datasets import load_digits, make_classification
    if dataset == "digits":
        X, y = load_digits(return_X_y=True)
        return (X / 16.0).astype(np.float32), y
    X, y = make_classification(n_samples=samples, n_features=128, n_informative=64, n_redundant=16, n_classes=10,
                               n_clusters_per_class=2, class_sep=1.5, random_state=seed)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), y


def _torch_mlp(hidden, n_in, n_out, batch, epochs, seed):
    """A fit function training torch's MLP of the same shape with torch.optim.Adam; None without torch."""
    try:
        import torch
    except ImportError:
        return None

    class TorchMLP:
        def fit(self, X, y):
            torch.manual_seed(seed)
            sizes = [n_in, *hidden]
            layers = [m for a, b in zip(sizes[:-1], sizes[1:]) for m in (torch.nn.Linear(a, b), torch.nn.ReLU())]
            self.net = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], n_out))
            opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, weight_decay=1e-4)
            Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
            gen = torch.Generator().manual_seed(seed)
            self.loss_curve_, self.n_iter_ = [], epochs
            for _ in range(epochs):
                total = 0.0
                for idx in torch.randperm(len(Xt), generator=gen).split(batch):
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(self.net(Xt[idx]), yt[idx])
                    loss.backward()
                    opt.step()
                    total += float(loss) * len(idx)
                self.loss_curve_.append(total / len(Xt))
            self.state_bytes = sum(v.nbytes for st in opt.state.values() for v in st.values()
                                   if isinstance(v, torch.Tensor))
            return self

        def predict(self, X):
            with torch.no_grad():
                return self.net(torch.from_numpy(X)).argmax(1).numpy()

    return TorchMLP()


def _state_bytes(name, est):
    """Bytes of optimizer state (Adam's moments) each library keeps for the network."""
    if name.startswith("fastopt"):
        return sum(v.nbytes for i in est._opt.state for v in est._opt.state[i].values() if isinstance(v, np.ndarray)
                   and v.ndim)
    if name.startswith("sklearn"):
        opt = est._optimizer
        return sum(a.nbytes for a in opt.ms + opt.vs)
    return est.state_bytes


def _compare(args, epochs, X_train, y_train, X_test, y_test):
    from sklearn.metrics import accuracy_score
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastopt.estimators import MLPClassifier
    hidden = tuple(args.hidden)
    common = dict(hidden_layer_sizes=hidden, batch_size=args.batch_size, max_iter=epochs,
                  n_iter_no_change=epochs + 1, random_state=args.seed)
    # scikit-learn's update rules (alpha's scaling, Adam's eps): from the same random_state, nearly the same fit
    models = {"fastopt MLPClassifier": MLPClassifier(optimizer="adam", learning_rate=1e-3, l2=1e-4,
                                                     penalty_scaling="batch",
                                                     optimizer_params={"eps_placement": "sklearn"}, **common),
              "sklearn MLPClassifier": SkMLP(solver="adam", learning_rate_init=1e-3, alpha=1e-4, **common)}
    torch_model = None if args.no_torch else _torch_mlp(hidden, X_train.shape[1], len(np.unique(y_train)),
                                                        args.batch_size, epochs, args.seed)
    if torch_model is not None:
        models["torch (torch.optim.Adam)"] = torch_model
    times = {name: [] for name in models}
    for _ in range(max(1, args.repeats)):          # alternating fits: the machine's speed drifts
        for name, est in models.items():
            times[name].append(_fit_timed(est, X_train, y_train))
    rows = [dict(name=name, seconds=float(np.median(times[name])), accuracy=accuracy_score(y_test, est.predict(X_test)),
                 epochs=est.n_iter_, state=_state_bytes(name, est), curve=list(est.loss_curve_))
            for name, est in models.items()]
    print(f"same network {hidden}, batch {args.batch_size}, Adam, {epochs} epochs "
          f"(median of {max(1, args.repeats)} fits each):")
    for r in rows:
        print(f"  {r['name']:<26} {r['seconds']:8.3f} s ({1e3 * r['seconds'] / r['epochs']:8.2f} ms/epoch)  "
              f"test accuracy {r['accuracy']:.4f}  optimizer state {r['state'] / 2**20:7.2f} MiB")
    for r in rows[1:]:
        print(f"  fastopt is {r['seconds'] / rows[0]['seconds']:.1f}x faster than {r['name']}")
    return rows
