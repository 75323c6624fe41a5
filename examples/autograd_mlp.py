"""A HIPS autograd training loop whose parameters fastopt steps: autograd computes the gradients as NumPy arrays,
``fastopt.optim.Adam`` updates the parameter arrays in place (no copies, one call into C per step).

    python examples/autograd_mlp.py            # prints the loss and the test accuracy
"""
import autograd.numpy as anp
import numpy as np
from autograd import grad
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastopt


def logits(params, X):
    W1, b1, W2, b2 = params
    return anp.dot(anp.maximum(anp.dot(X, W1) + b1, 0.0), W2) + b2


def loss(params, X, Y):
    z = logits(params, X)
    z = z - anp.max(z, axis=1, keepdims=True)
    return -anp.mean(anp.sum(Y * (z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))), axis=1))


def main(epochs=15, batch=64, seed=0):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.2, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    params = [rng.normal(0, 0.1, (64, 128)), np.zeros(128), rng.normal(0, 0.1, (128, 10)), np.zeros(10)]
    opt = fastopt.optim.Adam(params, lr=3e-3)
    loss_grad = grad(loss)
    Y = np.eye(10)[y_train]
    for epoch in range(epochs):
        order = rng.permutation(len(X_train))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            opt.step(loss_grad(params, X_train[idx], Y[idx]))      # a list of arrays aligned with params
        print(f"epoch {epoch + 1}: loss {loss(params, X_train, Y):.4f}")
    accuracy = float(np.mean(np.argmax(logits(params, X_test), axis=1) == y_test))
    print(f"test accuracy {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
