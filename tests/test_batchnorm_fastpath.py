"""The C-checked fast path of batch_norm_forward / batch_norm_backward (``_batchnorm.try_forward`` /
``try_backward``): bit-identical to the Python path wherever it runs, and it declines (returns None, writes
nothing) for every argument it does not take as is, leaving the Python path to copy or raise."""
import numpy as np
import pytest

from fastopt import _batchnorm
from fastopt.functional import batch_norm_backward, batch_norm_forward
from fastopt.functional import batchnorm as bn_module

from test_batchnorm import LAYOUTS, channel_params, make_x

RUN_IN_PLACE = [name for name, (_, _, memory) in LAYOUTS.items() if memory != "strided"]


@pytest.fixture
def python_path(monkeypatch):
    """Makes the functional API skip the fast path."""
    def disable():
        monkeypatch.setattr(bn_module._batchnorm, "try_forward", lambda *a: None)
        monkeypatch.setattr(bn_module._batchnorm, "try_backward", lambda *a: None)
    return disable


def _run(x, axis, gamma, beta, rm, rv, training, relu, dy):
    act = "relu" if relu else None
    y, sm, si = batch_norm_forward(x, gamma, beta, rm, rv, training=training, axis=axis, activation=act)
    dx, dg, db = batch_norm_backward(dy, x, gamma, sm, si, axis=axis, training=training, activation=act, beta=beta)
    return [y, sm, si, dx, dg, db, rm, rv]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", RUN_IN_PLACE)
@pytest.mark.parametrize("training,relu,affine", [(True, False, True), (True, True, True), (False, False, True),
                                                  (False, True, True), (True, False, False)])
def test_fast_path_equals_python_path(name, dtype, training, relu, affine, python_path):
    rng = np.random.default_rng(3)
    x, axis = make_x(rng, name, dtype)
    dy = np.empty_like(x)
    dy[...] = rng.standard_normal(x.shape)
    C = x.shape[axis]
    gamma, beta, rm, rv = channel_params(rng, C, dtype)
    if not affine:
        gamma = beta = None
    assert _batchnorm.try_forward(x, gamma, beta, rm.copy(), rv.copy(), training, 0.1, 1e-5, axis, None,
                                  "relu" if relu else None) is not None
    fast = _run(x, axis, gamma, beta, rm.copy(), rv.copy(), training, relu, dy)
    python_path()
    slow = _run(x, axis, gamma, beta, rm.copy(), rv.copy(), training, relu, dy)
    for f, s in zip(fast, slow):
        if s is None:
            assert f is None
            continue
        assert f.shape == s.shape and f.strides == s.strides and f.dtype == s.dtype
        np.testing.assert_array_equal(f, s)


def _valid(dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 8)).astype(dtype)
    gamma, beta, rm, rv = channel_params(rng, 8, dtype)
    return dict(x=x, gamma=gamma, beta=beta, running_mean=rm, running_var=rv, training=True, momentum=0.1,
                eps=1e-5, axis=1, out=None, activation=None)


def _strided(a):
    big = np.zeros(2 * a.size, a.dtype)
    big[::2] = a
    return big[::2]


def _swapped(a):
    return a.astype(a.dtype.newbyteorder(">"))


# Arguments the fast path must decline: each valid for the Python path (it copies or converts) or invalid (it
# raises); either way try_forward returns None and writes nothing.
DECLINE_FORWARD = {
    "x_strided": lambda k: k.update(x=k["x"][:, ::2], gamma=k["gamma"][:4], beta=k["beta"][:4],
                                    running_mean=k["running_mean"][:4], running_var=k["running_var"][:4]),
    "x_byteswapped": lambda k: k.update(x=_swapped(k["x"])),
    "x_float16": lambda k: k.update(x=k["x"].astype(np.float16)),
    "x_list": lambda k: k.update(x=k["x"].tolist()),
    "x_1d": lambda k: k.update(x=k["x"][0]),
    "gamma_strided": lambda k: k.update(gamma=_strided(k["gamma"])),
    "gamma_float64": lambda k: k.update(gamma=k["gamma"].astype(np.float64)),
    "beta_wrong_size": lambda k: k.update(beta=k["beta"][:7]),
    "running_mean_readonly": lambda k: k["running_mean"].setflags(write=False),
    "running_var_missing": lambda k: k.update(running_var=None),
    "momentum_int": lambda k: k.update(momentum=0),
    "momentum_nan": lambda k: k.update(momentum=float("nan")),
    "momentum_above_one": lambda k: k.update(momentum=1.5),
    "eps_negative": lambda k: k.update(eps=-1e-5),
    "eps_inf": lambda k: k.update(eps=float("inf")),
    "training_int": lambda k: k.update(training=1),
    "axis_bool": lambda k: k.update(axis=True),
    "axis_out_of_range": lambda k: k.update(axis=5),
    "axis_huge": lambda k: k.update(axis=2 ** 70),
    "activation_unknown": lambda k: k.update(activation="gelu"),
    "out_wrong_dtype": lambda k: k.update(out=np.empty((32, 8), np.float64)),
    "out_fortran": lambda k: k.update(out=np.empty((32, 8), np.float32, order="F")),
    "out_aliases_x": lambda k: k.update(out=k["x"]),
    "out_holds_running_mean": lambda k: k.update(out=(out := np.zeros((32, 8), np.float32)), running_mean=out[5]),
    "running_mean_aliases_gamma": lambda k: k.update(running_mean=k["gamma"]),
    "one_row_training": lambda k: k.update(x=k["x"][:1]),
}


@pytest.mark.parametrize("name", list(DECLINE_FORWARD))
def test_forward_declines_and_writes_nothing(name):
    kw = _valid()
    DECLINE_FORWARD[name](kw)
    _assert_declines(_batchnorm.try_forward, kw)


def _assert_declines(try_pass, kw):
    """try_pass(**kw) returns None and leaves every array argument as it was."""
    before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    assert try_pass(**kw) is None
    for k, v in before.items():
        np.testing.assert_array_equal(kw[k], v, err_msg=k)


def test_forward_out_aliasing_running_var_declines():
    kw = _valid()
    out = np.empty((32, 8), np.float32)
    kw.update(out=out, running_var=out[3])
    assert _batchnorm.try_forward(**kw) is None
    with pytest.raises(ValueError, match="share memory"):
        batch_norm_forward(kw.pop("x"), kw.pop("gamma"), kw.pop("beta"), kw.pop("running_mean"),
                           kw.pop("running_var"), **kw)


def _valid_backward(dtype=np.float32):
    kw = _valid(dtype)
    y, sm, si = batch_norm_forward(kw["x"], kw["gamma"], kw["beta"], kw["running_mean"], kw["running_var"],
                                   training=True)
    dy = np.random.default_rng(1).standard_normal(kw["x"].shape).astype(dtype)
    return dict(dy=dy, x=kw["x"], gamma=kw["gamma"], save_mean=sm, save_invstd=si, axis=1, training=True,
                activation=None, beta=kw["beta"], dx_out=None, dgamma_out=np.zeros(8, dtype),
                dbeta_out=np.zeros(8, dtype))


DECLINE_BACKWARD = {
    "dy_fortran": lambda k: k.update(dy=np.asfortranarray(k["dy"])),
    "dy_wrong_dtype": lambda k: k.update(dy=k["dy"].astype(np.float64)),
    "dy_wrong_shape": lambda k: k.update(dy=k["dy"][:16]),
    "save_mean_float32": lambda k: k.update(save_mean=k["save_mean"].astype(np.float32)),
    "save_invstd_none": lambda k: k.update(save_invstd=None),
    "dgamma_out_readonly": lambda k: k["dgamma_out"].setflags(write=False),
    "dbeta_out_strided": lambda k: k.update(dbeta_out=_strided(k["dbeta_out"])),
    "dx_out_aliases_dy": lambda k: k.update(dx_out=k["dy"]),
    "dgamma_out_is_dbeta_out": lambda k: k.update(dbeta_out=k["dgamma_out"]),
    "dgamma_out_aliases_gamma": lambda k: k.update(dgamma_out=k["gamma"]),
    "training_none": lambda k: k.update(training=None),
    "activation_unknown": lambda k: k.update(activation="tanh"),
}


@pytest.mark.parametrize("name", list(DECLINE_BACKWARD))
def test_backward_declines_and_writes_nothing(name):
    kw = _valid_backward()
    DECLINE_BACKWARD[name](kw)
    _assert_declines(_batchnorm.try_backward, kw)


def test_declined_but_valid_calls_still_run():
    """The Python path finishes what the fast path declines (a strided gamma is copied, an int momentum taken)."""
    kw = _valid()
    ref = batch_norm_forward(kw["x"], kw["gamma"], kw["beta"], kw["running_mean"].copy(),
                             kw["running_var"].copy(), training=True, momentum=0.0)[0]
    y = batch_norm_forward(kw["x"], _strided(kw["gamma"]), kw["beta"], kw["running_mean"].copy(),
                           kw["running_var"].copy(), training=True, momentum=0)[0]
    np.testing.assert_array_equal(y, ref)


def test_layer_buffer_reuse_tells_aligned_from_unaligned_inputs():
    """reuse_buffers: an unaligned input of the same shape and strides as an earlier aligned one is copied to C
    order by the kernels' caller, so it needs the C-order buffer, not the earlier one."""
    import fastopt
    rng = np.random.default_rng(0)
    bn = fastopt.nn.BatchNorm(4, axis=1, reuse_buffers=True)
    x = np.moveaxis(rng.standard_normal((6, 5, 5, 4)).astype(np.float32), -1, 1)      # NCHW shape, NHWC memory
    y1 = bn.forward(x).copy()
    raw = np.zeros(x.nbytes + 1, np.uint8)[1:]                                       # unaligned float32 memory
    xu = np.ndarray((6, 5, 5, 4), np.float32, buffer=raw)
    xu[...] = np.moveaxis(x, 1, -1)
    xu = np.moveaxis(xu, -1, 1)
    assert xu.strides == x.strides and not xu.flags.aligned
    np.testing.assert_allclose(bn.forward(xu), y1, rtol=1e-5, atol=1e-6)   # other layout: other summation order
