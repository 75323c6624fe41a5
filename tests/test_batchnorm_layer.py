"""fastopt.nn.BatchNorm: modes, in-place parameters for optimizers, buffer reuse, state_dict."""
import io
import pickle

import numpy as np
import pytest

import fastopt
from fastopt.functional import batch_norm_forward

from _reference_batchnorm import forward as ref_forward


def data(shape=(8, 5, 6, 6), seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(1.0, 2.0, shape).astype(dtype)


def test_training_then_eval_uses_running_statistics():
    bn = fastopt.nn.BatchNorm(5, momentum=0.5)
    x = data()
    bn.forward(x)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    assert not np.allclose(rm, 0) and bn.num_batches_tracked == 1
    y = bn.eval().forward(x)
    np.testing.assert_array_equal(bn.running_mean, rm)            # eval leaves the statistics alone
    ry = ref_forward(x, bn.gamma, bn.beta, rm, rv, training=False)[0]
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
    assert bn.training is False and bn.train().training is True
    y2 = bn.forward(x, training=False)                              # per-call override
    np.testing.assert_array_equal(y, y2)


def test_momentum_none_is_cumulative_average():
    bn = fastopt.nn.BatchNorm(5, momentum=None)
    xs = [data(seed=s) for s in range(4)]
    for x in xs:
        bn.forward(x)
    means = [x.astype(np.float64).mean(axis=(0, 2, 3)) for x in xs]
    np.testing.assert_allclose(bn.running_mean, np.mean(means, axis=0), rtol=1e-5, atol=1e-6)


def test_no_running_stats_uses_batch_statistics_in_eval():
    bn = fastopt.nn.BatchNorm(5, track_running_stats=False).eval()
    assert bn.running_mean is None
    y = bn.forward(data())
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_optimizer_holds_the_parameters():
    bn = fastopt.nn.BatchNorm(5)
    gamma, beta = bn.gamma, bn.beta
    opt = fastopt.SGD(bn.parameters(), lr=0.1)
    x = data()
    y = bn.forward(x)
    bn.backward(np.ones_like(y) + y)           # loss sum(y + y^2 / 2)
    assert bn.grad_gamma is bn.gradients()[0]
    g0 = bn.grad_gamma.copy()
    opt.step(bn.gradients())
    assert bn.gamma is gamma and bn.beta is beta
    np.testing.assert_allclose(bn.gamma, 1 - 0.1 * g0, rtol=1e-6)
    y2 = bn.forward(x)                          # the updated gamma is used
    ry = ref_forward(x, bn.gamma, bn.beta, None, None, training=True)[0]
    np.testing.assert_allclose(y2, ry, rtol=1e-5, atol=1e-5)


def test_backward_overwrites_gradients():
    bn = fastopt.nn.BatchNorm(5)
    x = data()
    y = bn.forward(x)
    bn.backward(np.ones_like(y))
    first = bn.grad_beta.copy()
    bn.forward(x)
    bn.backward(np.ones_like(y))
    np.testing.assert_array_equal(bn.grad_beta, first)


def test_fresh_outputs_by_default():
    bn = fastopt.nn.BatchNorm(5)
    x = data()
    y1 = bn.forward(x)
    y2 = bn.forward(x)
    assert not np.shares_memory(y1, y2)


@pytest.mark.parametrize("layout", ["nchw", "torch_channels_last", "strided"])
def test_reuse_buffers(layout):
    bn = fastopt.nn.BatchNorm(5, reuse_buffers=True)
    x = data()
    if layout == "torch_channels_last":
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    elif layout == "strided":
        x = data((8, 5, 6, 12))[..., ::2]
    y1 = bn.forward(x)
    y1_copy = y1.copy()
    dx1 = bn.backward(np.ones_like(x))
    x2 = np.empty_like(x, order="K") if layout != "strided" else data((8, 5, 6, 12))[..., 1::2]
    x2[...] = x * 2                          # the same memory layout as x
    y2 = bn.forward(x2)
    assert y2 is y1                          # same buffer: the earlier result was overwritten
    np.testing.assert_allclose(y2, y1_copy, rtol=1e-5, atol=1e-5)     # BN is scale-invariant
    assert bn.backward(np.ones_like(x)) is dx1
    y3 = bn.forward(data((4, 5, 6, 6)))     # another shape: another buffer
    assert y3.shape == (4, 5, 6, 6) and y3 is not y1


@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
def test_state_dict_roundtrip(affine, track, tmp_path):
    bn = fastopt.nn.BatchNorm(5, affine=affine, track_running_stats=track)
    x = data()
    bn.forward(x)
    if affine:
        bn.gamma[:] = np.arange(5)
    state = bn.state_dict()
    restored = pickle.loads(pickle.dumps(state))
    buf = io.BytesIO()
    np.savez(buf, **state)
    other = fastopt.nn.BatchNorm(5, affine=affine, track_running_stats=track)
    held = other.gamma
    other.load_state_dict(restored)
    assert other.gamma is held
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    np.testing.assert_array_equal(other.eval().forward(x), bn.eval().forward(x))


def test_load_state_dict_checks_before_writing():
    bn = fastopt.nn.BatchNorm(5)
    state = bn.state_dict()
    before = fastopt.nn.BatchNorm(5).state_dict()
    bad = dict(state, running_var=np.ones(4, np.float32), weight=np.full(5, 3.0, np.float32))
    with pytest.raises(ValueError, match=r"running_var has shape \(4,\)"):
        bn.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing keys"):
        bn.load_state_dict({"weight": np.ones(5)})
    with pytest.raises(TypeError, match="dtype"):
        bn.load_state_dict(dict(state, bias=np.zeros(5, np.int32)))
    with pytest.raises(ValueError, match="num_batches_tracked"):
        bn.load_state_dict(dict(state, num_batches_tracked=-1))
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_torch_state_dict_loads():
    torch = pytest.importorskip("torch")
    tbn = torch.nn.BatchNorm2d(5)
    tbn(torch.randn(8, 5, 4, 4))
    bn = fastopt.nn.BatchNorm(5)
    bn.load_state_dict({k: v.detach().numpy() for k, v in tbn.state_dict().items()})
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy())
    assert bn.num_batches_tracked == 1


def test_channels_last_layer_float64():
    bn = fastopt.nn.BatchNorm(5, axis=-1, dtype=np.float64)
    x = data((4, 6, 6, 5), dtype=np.float64)
    y = bn.forward(x)
    ry, *_ = ref_forward(x, bn.gamma, bn.beta, None, None, training=True, axis=-1)
    np.testing.assert_allclose(y, ry, rtol=1e-10, atol=1e-10)
    # the layer is the functional form with its own buffers: the same bits as batch_norm_forward on the same state
    fy, *_ = batch_norm_forward(x, bn.gamma, bn.beta, None, None, training=True, axis=-1)
    np.testing.assert_array_equal(y, fy)
    assert "BatchNorm(5, axis=-1" in repr(bn)
