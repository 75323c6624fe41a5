"""fastopt.nn.BatchNorm against torch nn.BatchNorm{1,2,3}d: forward output, running statistics over several steps,
dx, dgamma, dbeta, for every layout and mode (skipped where torch is not importable)."""
import numpy as np
import pytest

import fastopt

torch = pytest.importorskip("torch")

# name -> (shape as torch sees it (N, C, ...), fastopt axis, how fastopt sees x)
#   "c": the same C-contiguous array;  "torch_cl": tensor.numpy() of a channels_last tensor (NCHW shape, NHWC
#   memory), axis=1;  "numpy_cl": a C-contiguous channels-last NumPy array (N, H, W, C), axis=-1
CASES = {
    "nc": ((48, 10), 1, "c"),
    "ncl": ((8, 6, 50), 1, "c"),
    "nchw": ((8, 6, 12, 14), 1, "c"),
    "nchw_big": ((16, 8, 24, 24), 1, "c"),            # above the parallel threshold
    "ncdhw": ((4, 5, 6, 5, 4), 1, "c"),
    "nchw_torch_channels_last": ((8, 6, 12, 14), 1, "torch_cl"),
    "nhwc_numpy": ((16, 8, 24, 24), -1, "numpy_cl"),
}
MODULES = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}


def to_fastopt(t, how):
    """The NumPy array fastopt gets for torch tensor t (N, C, ...)."""
    if how == "numpy_cl":
        return np.ascontiguousarray(np.moveaxis(t.detach().numpy(), 1, -1))
    return t.detach().numpy()


def from_fastopt(a, how):
    return np.moveaxis(a, -1, 1) if how == "numpy_cl" else a


def make_tensor(rng, shape, how, dtype):
    t = torch.tensor(rng.normal(0.7, 1.8, shape).astype(dtype))
    if how == "torch_cl":
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def close(a, b, dtype, what):
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b))))
    tol = 3e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=what)


MODES = {
    "default": dict(),
    "momentum_none": dict(momentum=None),
    "no_affine": dict(affine=False),
    "no_running_stats": dict(track_running_stats=False),
    "relu": dict(activation="relu"),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", list(CASES))
def test_layer_matches_torch(case, mode, dtype, num_threads):
    rng = np.random.default_rng(3)
    shape, axis, how = CASES[case]
    C = shape[1]
    opts = dict(MODES[mode])
    relu = opts.pop("activation", None) == "relu"
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tbn = MODULES[len(shape)](C, eps=1e-4, dtype=tdtype, **{k: v for k, v in opts.items()}).train()
    if tbn.affine:
        with torch.no_grad():
            tbn.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, C)))
            tbn.bias.copy_(torch.tensor(rng.normal(0, 0.5, C)))
    bn = fastopt.nn.BatchNorm(C, axis=axis, eps=1e-4, dtype=dtype, activation="relu" if relu else None, **opts)
    if bn.affine:
        bn.load_state_dict({k: v.detach().numpy() for k, v in tbn.state_dict().items()})

    def step(training):
        tbn.train(training)
        bn.train(training)
        tx = make_tensor(rng, shape, how, dtype).requires_grad_(True)
        ty = tbn(tx)
        if relu:
            ty = torch.relu(ty)
        x = to_fastopt(tx, how)
        y = bn.forward(x)
        close(from_fastopt(y, how), ty, dtype, "y")
        tdy = make_tensor(rng, shape, how, dtype)
        if tbn.affine:
            tbn.weight.grad = tbn.bias.grad = None
        ty.backward(tdy)
        dx = bn.backward(to_fastopt(tdy, how))
        close(from_fastopt(dx, how), tx.grad, dtype, "dx")
        if bn.affine:
            close(bn.grad_gamma, tbn.weight.grad, dtype, "dgamma")
            close(bn.grad_beta, tbn.bias.grad, dtype, "dbeta")
        if bn.track_running_stats:
            close(bn.running_mean, tbn.running_mean, dtype, "running_mean")
            close(bn.running_var, tbn.running_var, dtype, "running_var")
            assert bn.num_batches_tracked == int(tbn.num_batches_tracked)

    for _ in range(3):
        step(True)
    step(False)
    step(True)


@pytest.mark.parametrize("training", [True, False])
def test_functional_matches_torch_functional(training, rng):
    """F.batch_norm with a torch channels_last tensor, compared through fastopt.functional."""
    from fastopt.functional import batch_norm_backward, batch_norm_forward
    C = 6
    tx = torch.tensor(rng.normal(size=(8, C, 10, 10)).astype(np.float32)).contiguous(
        memory_format=torch.channels_last).requires_grad_(True)
    w = torch.tensor(rng.uniform(0.5, 1.5, C).astype(np.float32), requires_grad=True)
    b = torch.tensor(rng.normal(size=C).astype(np.float32), requires_grad=True)
    trm, trv = torch.zeros(C), torch.ones(C)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, w, b, training, 0.2, 1e-5)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    x = tx.detach().numpy()
    y, sm, si = batch_norm_forward(x, w.detach().numpy(), b.detach().numpy(), rm, rv, training=training,
                                   momentum=0.2)
    close(y, ty, np.float32, "y")
    assert y.strides == x.strides
    close(rm, trm, np.float32, "running_mean")
    close(rv, trv, np.float32, "running_var")
    tdy = torch.randn(tx.shape)
    ty.backward(tdy)
    dx, dg, db = batch_norm_backward(tdy.numpy(), x, w.detach().numpy(), sm, si, training=training)
    close(dx, tx.grad, np.float32, "dx")
    close(dg, w.grad, np.float32, "dgamma")
    close(db, b.grad, np.float32, "dbeta")


def test_batch_of_one_raises_like_torch():
    bn = torch.nn.BatchNorm1d(4)
    with pytest.raises(ValueError):
        bn(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fastopt.nn.BatchNorm(4).forward(np.zeros((1, 4), np.float32))
