"""A JAX-on-CPU training loop whose parameters fastopt steps: ``jax.grad`` (jit-compiled) gives the gradients,
``np.asarray`` turns them into NumPy arrays, ``fastopt.optim.AdamW`` updates NumPy parameter arrays in place.
The parameters stay NumPy arrays (JAX arrays are immutable); JAX reads them at each call.

    JAX_PLATFORMS=cpu python examples/jax_mlp.py
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import fastopt  # noqa: E402


def logits(params, X):
    W1, b1, W2, b2 = params
    return jnp.maximum(X @ W1 + b1, 0.0) @ W2 + b2


def loss(params, X, y):
    logp = jax.nn.log_softmax(logits(params, X))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def main(epochs=15, batch=64, seed=0):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    params = [rng.normal(0, 0.1, (64, 128)).astype(np.float32), np.zeros(128, np.float32),
              rng.normal(0, 0.1, (128, 10)).astype(np.float32), np.zeros(10, np.float32)]
    opt = fastopt.optim.AdamW(params, lr=3e-3, weight_decay=1e-4)
    loss_grad = jax.jit(jax.grad(loss))
    for epoch in range(epochs):
        order = rng.permutation(len(X_train))
        for s in range(0, len(order) - batch + 1, batch):           # full batches: one jit shape
            idx = order[s:s + batch]
            grads = loss_grad(params, X_train[idx], y_train[idx])
            opt.step([np.asarray(g) for g in grads])
        print(f"epoch {epoch + 1}: loss {float(loss(params, X_train, y_train)):.4f}")
    accuracy = float(np.mean(np.argmax(np.asarray(logits(params, X_test)), axis=1) == y_test))
    print(f"test accuracy {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
