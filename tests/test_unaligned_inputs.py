"""Read-only inputs in any layout are copied once into what the kernels take (fastopt._validation.kernel_input):
unaligned (a view at a 1-byte offset), byte-swapped, non-contiguous and byte-swapped 0-d inputs give, bit for bit,
the result of the clean aligned copy, keep their shape, and are left unchanged. In-place targets stay strict."""
import numpy as np
import pytest

import fastopt
from fastopt import losses, regularize
from fastopt._validation import kernel_input
from fastopt.functional import (batch_norm_backward, batch_norm_forward, bias_activation, bias_activation_backward,
                                dropout, dropout_backward)


def unaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)[1:]
    b = buf.view(a.dtype).reshape(a.shape)
    b[...] = a
    assert a.dtype.itemsize == 1 or not b.flags.aligned
    return b


def swapped(a):
    return a.astype(a.dtype.newbyteorder("S"))


def strided(a):
    b = np.zeros(a.shape + (2,), a.dtype)
    b[..., 0] = a
    return b[..., 0]


def unaligned_swapped(a):
    return unaligned(swapped(a))


LAYOUTS = [unaligned, swapped, strided, unaligned_swapped]


def assert_same(got, want):
    """Equal bit for bit (NaN-aware), same type, shape and dtype (byte order aside)."""
    if isinstance(want, (tuple, list)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.shape == want.shape
        assert got.dtype.newbyteorder("=") == want.dtype.newbyteorder("=")
        native = want.dtype.newbyteorder("=")
        assert got.astype(native).tobytes() == want.astype(native).tobytes()
    elif isinstance(want, float):
        assert isinstance(got, float) and np.float64(got).tobytes() == np.float64(want).tobytes()
    else:
        assert got == want


def check_layouts(fn, *arrays, layouts=LAYOUTS):
    """fn(*arrays in each layout) == fn(*arrays), each array alone and all together; inputs unchanged."""
    want = fn(*[a.copy() for a in arrays])
    for layout in layouts:
        for which in [[i] for i in range(len(arrays))] + [list(range(len(arrays)))]:
            args = [layout(a) if i in which else a.copy() for i, a in enumerate(arrays)]
            before = [a.copy() for a in args]
            assert_same(fn(*args), want)
            for a, b in zip(args, before):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a, b)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------------------- the helper itself
@pytest.mark.parametrize("layout", LAYOUTS + [lambda a: a])
@pytest.mark.parametrize("shape", [(), (7,), (3, 5)])
def test_kernel_input(layout, shape, rng, dtype):
    a = layout(_rand(rng, shape, dtype))
    k = kernel_input(a)
    assert k.flags.c_contiguous and k.flags.aligned and k.dtype.isnative and k.shape == a.shape
    np.testing.assert_array_equal(k, a)
    if a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative:
        assert k is a
    else:
        assert not np.shares_memory(k, a)


def test_kernel_input_dtype():
    a = unaligned(np.arange(5, dtype=np.int32))
    k = kernel_input(a, np.int64)
    assert k.dtype == np.int64 and k.flags.aligned
    np.testing.assert_array_equal(k, a)


# ---------------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("name", ["mse", "mae", "huber", "binary_cross_entropy_with_logits"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_elementwise_losses(name, reduction, rng, dtype):
    fn = getattr(losses, name)
    x, t = _rand(rng, (6, 5), dtype), rng.random((6, 5)).astype(dtype)
    w = rng.random(6).astype(dtype)
    check_layouts(lambda a, b, c: fn(a, b, reduction=reduction, sample_weight=c), x, t, w)


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "binary_cross_entropy_with_logits"])
def test_elementwise_losses_0d(name, rng, dtype):
    fn = getattr(losses, name)
    x, t = _rand(rng, (), dtype), rng.random(()).astype(dtype)
    check_layouts(lambda a, b: fn(a, b, reduction="none"), x, t)
    check_layouts(fn, x, t)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "hinge"])
def test_row_losses_labels(name, rng, dtype):
    fn = getattr(losses, name)
    x, labels = _rand(rng, (7, 4), dtype), rng.integers(0, 4, 7)
    cw, sw = rng.random(4).astype(dtype) + 0.5, rng.random(7).astype(dtype)
    check_layouts(lambda a, b, c, d: fn(a, b, class_weight=c, sample_weight=d), x, labels, cw, sw)
    check_layouts(lambda a, b: fn(a, b, reduction="none"), x[0], np.array(labels[0]))   # (C,) logits, 0-d label


def test_softmax_cross_entropy_probs(rng, dtype):
    x = _rand(rng, (5, 3), dtype)
    p = rng.random((5, 3)).astype(dtype)
    p /= p.sum(axis=1, keepdims=True)
    check_layouts(lambda a, b: losses.softmax_cross_entropy(a, b, label_smoothing=0.1), x, p)


def test_add_penalty_grad_params(rng, dtype):
    params = [_rand(rng, (4, 3), dtype), _rand(rng, (5,), dtype)]
    grads = [_rand(rng, p.shape, dtype) for p in params]

    def fn(p0, p1):
        g = [a.copy() for a in grads]
        return regularize.add_penalty_grad_(g, [p0, p1], l1=0.01, l2=0.1), g

    check_layouts(fn, *params)


# ---------------------------------------------------------------------------------------------- functional
def test_bias_activation(rng, dtype):
    x, b = _rand(rng, (6, 5), dtype), _rand(rng, (5,), dtype)
    check_layouts(lambda a, c: bias_activation(a, c), x, b)
    y = bias_activation(x, b)
    check_layouts(lambda dy, yy: bias_activation_backward(dy, yy), _rand(rng, (6, 5), dtype), y)


@pytest.mark.parametrize("shape", [(), (9,), (4, 6)])
def test_dropout(shape, rng, dtype):
    x = _rand(rng, shape, dtype)
    check_layouts(lambda a: dropout(a, 0.3, 7), x)
    check_layouts(lambda a: dropout_backward(a, 0.3, 7), x)


@pytest.mark.parametrize("shape, axis", [((6, 3), 1), ((4, 3, 5), 1), ((4, 5, 3), -1)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, axis, training, rng, dtype):
    x = _rand(rng, shape, dtype)
    C = shape[axis]
    g, b = _rand(rng, (C,), dtype), _rand(rng, (C,), dtype)
    rm, rv = _rand(rng, (C,), dtype), rng.random(C).astype(dtype) + 0.5

    def forward(xx, gg, bb):
        m, v = rm.copy(), rv.copy()
        return batch_norm_forward(xx, gg, bb, m, v, training=training, axis=axis), m, v

    check_layouts(forward, x, g, b)
    _, sm, si = batch_norm_forward(x, g, b, rm.copy(), rv.copy(), training=training, axis=axis)
    check_layouts(lambda dy, xx, gg, m, s: batch_norm_backward(dy, xx, gg, m, s, axis=axis, training=training),
                  _rand(rng, shape, dtype), x, g, sm, si)


@pytest.mark.parametrize("axis", [1, -1])
def test_batch_norm_layer(axis, rng, dtype):
    x, dy = _rand(rng, (5, 3, 4), dtype), _rand(rng, (5, 3, 4), dtype)
    C = x.shape[axis]

    def run(xx, dd):
        bn = fastopt.nn.BatchNorm(C, axis=axis, dtype=dtype)
        y = bn.forward(xx).copy()
        return y, bn.backward(dd).copy(), bn.grad_gamma.copy(), bn.running_mean.copy()

    check_layouts(run, x, dy)


# ---------------------------------------------------------------------------------------------- clip and optimizers
def test_get_total_norm(rng, dtype):
    a, b = _rand(rng, (4, 5), dtype), _rand(rng, (3,), dtype)
    for p in (2.0, 1.0, np.inf):
        check_layouts(lambda x, y: fastopt.get_total_norm([x, y], p), a, b)
    check_layouts(lambda x: fastopt.get_total_norm([x]), _rand(rng, (), dtype))


def test_clip_grad_norm_reads_copies(rng, dtype):
    grads = [_rand(rng, (4, 5), dtype), _rand(rng, (3,), dtype)]

    def fn(g0, g1):
        g = [kernel_input(g0).copy(), kernel_input(g1).copy()]
        return fastopt.clip_grad_norm_(g, 0.5), g

    check_layouts(fn, *grads)


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_optimizer_step_grads(opt, rng, dtype):
    params = [_rand(rng, (4, 3), dtype), _rand(rng, (5,), dtype)]
    grads = [_rand(rng, p.shape, dtype) for p in params]

    def fn(g0, g1):
        ps = [p.copy() for p in params]
        o = getattr(fastopt.optim, opt)(ps, lr=0.1)
        o.step([g0, g1])
        o.step([g0, g1])
        return ps

    check_layouts(fn, *grads)


def test_functional_optimizer_grads(rng, dtype):
    """The functional forms' gradient copy (fastopt/_optim_functional.pxi) is aligned too."""
    p0, m0, v0 = _rand(rng, (4, 3), dtype), _rand(rng, (4, 3), dtype), np.abs(_rand(rng, (4, 3), dtype))
    grad = _rand(rng, (4, 3), dtype)

    def fn(g):
        p, m, v = p0.copy(), m0.copy(), v0.copy()
        fastopt.functional.sgd_(p, g, m, lr=0.1, momentum=0.9)
        fastopt.functional.adam_(p, g, m, v, step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
        return p, m, v

    check_layouts(fn, grad)


# ---------------------------------------------------------------------------------------------- in place stays strict
def test_unaligned_inplace_targets_raise(rng):
    x = _rand(rng, (6, 4), np.float32)
    out = unaligned(np.zeros_like(x))
    with pytest.raises(ValueError, match="out"):
        dropout(x, 0.5, 1, out=out)
    with pytest.raises(ValueError, match="out"):
        bias_activation(x, np.zeros(4, np.float32), out=out)
    with pytest.raises(ValueError, match="running_mean"):
        batch_norm_forward(x, None, None, unaligned(np.zeros(4, np.float32)), np.ones(4, np.float32),
                           training=True)
    with pytest.raises(ValueError, match="aligned"):
        fastopt.clip_grad_norm_([out], 1.0)
    with pytest.raises(ValueError, match="aligned"):
        regularize.add_penalty_grad_([out], [x], l2=0.1)
    assert not out.any()
