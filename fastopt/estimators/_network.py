"""The multilayer perceptron behind the estimators: dense layers (NumPy matmul, i.e. BLAS), optional batch norm
with fused ReLU, dropout, all on preallocated buffers so that a training step allocates nothing large.

Forward, for each hidden layer l (h_0 = X):

    z_l = h_{l-1} W_l,   a_l = BN_l(z_l) or z_l + b_l,   h_l = dropout(relu(a_l))

with bias + ReLU fused (fastopt.functional.bias_activation, or batch norm's fused ReLU).
and the output layer o = h_L W_out + b_out. Backward applies the chain rule in reverse, filling ``grads`` (aligned
with ``params``) in place.
"""
import numpy as np

from fastopt.functional import bias_activation, bias_activation_backward, dropout, dropout_backward
from fastopt.nn import BatchNorm


class Network:
    """Parameters, gradient arrays and activation buffers of one MLP.

    params: [W_1, (b_1 | gamma_1, beta_1), ..., W_out, b_out], and ``grads`` the same shapes, in place.
    ``weights`` lists the W_l (the arrays L1/L2 penalties apply to).
    """

    def __init__(self, n_in, hidden, n_out, *, batch_norm, dropout_p, dtype, rng):
        self.sizes = [n_in, *hidden, n_out]
        self.dtype = np.dtype(dtype)
        self.batch_norm = batch_norm
        self.dropout_p = float(dropout_p)
        self.weights, self.biases, self.bns = [], [], []
        self.params, self.grads, self.weight_grads, self.bias_grads = [], [], [], []
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            last = l == len(self.sizes) - 2
            # Glorot uniform, scikit-learn's MLP's draws exactly (W then b per layer, float64 then cast): for the
            # same RandomState, the same initial weights (the estimators' documented guarantee)
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(self.dtype)
            self.weights.append(W)
            self.params.append(W)
            gW = np.zeros_like(W)
            self.grads.append(gW)
            self.weight_grads.append(gW)
            if batch_norm and not last:
                bn = BatchNorm(fan_out, axis=1, activation="relu", dtype=self.dtype, reuse_buffers=True)
                self.bns.append(bn)
                self.biases.append(None)
                self.params += [bn.gamma, bn.beta]
                self.grads += [bn.grad_gamma, bn.grad_beta]
                self.bias_grads.append(None)
            else:
                b = rng.uniform(-bound, bound, fan_out).astype(self.dtype)
                self.biases.append(b)
                self.bns.append(None)
                self.params.append(b)
                self.grads.append(np.zeros_like(b))
                self.bias_grads.append(self.grads[-1])
        self._capacity = 0

    def state_arrays(self):
        """Everything that defines the function the network computes: params and batch-norm running statistics
        (what early stopping snapshots and restores)."""
        extra = [a for bn in self.bns if bn is not None for a in (bn.running_mean, bn.running_var)]
        return self.params + extra

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """Parameters and layers only: activation buffers are scratch, rebuilt at the next pass."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_z", "_h", "_dh", "_x")}
        state["_capacity"] = 0
        return state

    def __setstate__(self, state):
        """Arrays come back writeable even from a read-only source (joblib memmaps): read-only ones are copied,
        and the params / grads lists are rebuilt from the copies."""
        self.__dict__.update(state)

        def own(a):
            return a if a is None or a.flags.writeable else a.copy()

        self.weights = [own(w) for w in self.weights]
        self.biases = [own(b) for b in self.biases]
        self.weight_grads = [own(g) for g in self.weight_grads]
        self.bias_grads = [own(g) for g in self.bias_grads]
        for bn in self.bns:
            if bn is not None:
                for name in ("gamma", "beta", "grad_gamma", "grad_beta", "running_mean", "running_var"):
                    setattr(bn, name, own(getattr(bn, name)))
                bn._buffers = {}
                bn._plans = (None, None)
        self.params, self.grads = [], []
        for W, gW, b, gb, bn in zip(self.weights, self.weight_grads, self.biases, self.bias_grads, self.bns):
            self.params.append(W)
            self.grads.append(gW)
            if bn is not None:
                self.params += [bn.gamma, bn.beta]
                self.grads += [bn.grad_gamma, bn.grad_beta]
            else:
                self.params.append(b)
                self.grads.append(gb)

    # ------------------------------------------------------------------ buffers
    def _ensure(self, m):
        """Activation buffers for batches of up to m rows (views [:m] of them are C-contiguous)."""
        if m <= self._capacity:
            return
        dt = self.dtype
        self._z = [np.empty((m, s), dt) for s in self.sizes[1:]]          # pre-activations, output logits last
        self._h = [np.empty((m, s), dt) for s in self.sizes[1:-1]]        # hidden outputs
        self._dh = [np.empty((m, s), dt) for s in self.sizes[1:-1]]
        self._capacity = m

    # ------------------------------------------------------------------ passes
    def forward(self, X, *, training, seed=0):
        """Output-layer values (logits or regression outputs) for X; a view valid until the next call."""
        m = X.shape[0]
        self._ensure(m)
        self._x = X
        h = X
        n_layers = len(self.weights)
        for l in range(n_layers):
            z = self._z[l][:m]
            if training or self.dtype == np.float64:
                np.matmul(h, self.weights[l], out=z)
            else:
                # inference: float64 products rounded once to float32. BLAS sums in another order for another
                # number of rows; in float64 that changes the float32 result only when a value lies within ~1e-16
                # of a float32 rounding boundary, so a sample's output almost never depends on its batch
                np.matmul(h, self.weights[l], out=z, dtype=np.float64)
            if l == n_layers - 1:
                bias_activation(z, self.biases[l], activation=None, out=z)
                return z
            out = self._h[l][:m]
            bn = self.bns[l]
            if bn is not None:
                out[...] = bn.forward(z, training=training)
            else:
                bias_activation(z, self.biases[l], out=out)     # relu(z + b), one fused pass
            if training and self.dropout_p > 0:
                dropout(out, p=self.dropout_p, seed=seed * 1_000_003 + l, out=out)
            h = out
        return h

    def backward(self, d_out, *, seed=0):
        """Fills ``grads`` from d(loss)/d(output) of the last training forward."""
        m = d_out.shape[0]
        n_layers = len(self.weights)
        d = d_out
        bias_activation_backward(d, activation=None, dx_out=d, dbias_out=self.bias_grads[-1])  # output bias: sums
        for l in range(n_layers - 1, -1, -1):
            h_prev = self._x if l == 0 else self._h[l - 1][:m]
            gW = self.weight_grads[l]
            np.matmul(h_prev.T, d, out=gW)
            if l == 0:
                break
            dh = self._dh[l - 1][:m]
            np.matmul(d, self.weights[l].T, out=dh)
            if self.dropout_p > 0:
                dropout_backward(dh, p=self.dropout_p, seed=seed * 1_000_003 + (l - 1), out=dh)
            bn = self.bns[l - 1]
            if bn is not None:
                dh[...] = bn.backward(dh)
            else:
                # dh <- dh [h > 0] and the bias gradient, one fused pass (h: the layer's output, after dropout)
                bias_activation_backward(dh, self._h[l - 1][:m], dx_out=dh, dbias_out=self.bias_grads[l - 1])
            d = dh
