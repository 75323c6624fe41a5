"""Bad input raises a clear error before anything is written (losses, penalty, max-norm, dropout)."""
import numpy as np
import pytest

from fastopt import losses, regularize
from fastopt.functional import dropout, dropout_backward
from _arrays import readonly

f32, f64 = np.float32, np.float64


def _ce_arrays():
    x = np.arange(12, dtype=f64).reshape(4, 3) / 10
    return x, np.array([0, 1, 2, 1]), np.full((4, 3), 7.0)


def _reg_arrays():
    return np.linspace(-1, 1, 6), np.linspace(1, 0, 6), np.full(6, 7.0)


# (name, callable(watch) -> None, exception, message regex); `watch` arrays must be unchanged afterwards.
def _cases():
    cases = []

    def ce(name, exc, rx, **kw):
        def run(w):
            x, y, g = w
            args = {"target": y, "grad_out": g}
            args.update({k: (v(w) if callable(v) else v) for k, v in kw.items()})
            losses.softmax_cross_entropy(args.pop("logits", x), args.pop("target"), **args)
        cases.append((name, _ce_arrays, run, exc, rx))

    ce("label too large", ValueError, r"target\[2\] = 3 is not a valid class label", target=np.array([0, 1, 3, 1]))
    ce("negative label", ValueError, r"target\[0\] = -1 is not a valid class label.*ignore_index=-100",
       target=np.array([-1, 1, 2, 1]))
    ce("label equal to a custom ignore_index is fine, another is not", ValueError, r"target\[1\] = -100",
       target=np.array([5, -100, 2, 1]), ignore_index=5)
    ce("probabilities of the wrong shape", ValueError, r"probabilities must have the shape of logits",
       target=np.full((4, 2), 0.5))
    ce("probabilities of another dtype", TypeError, r"probabilities must have the dtype of logits",
       target=np.full((4, 3), 0.5, f32))
    ce("labels of the wrong shape", ValueError, r"class labels of shape \(4,\)", target=np.zeros(5, np.int64))
    ce("bool target", TypeError, r"target: expected integer class labels", target=np.zeros(4, bool))
    ce("NaN class weight", ValueError, r"class_weight: weights must be finite and >= 0, got nan",
       class_weight=np.array([1.0, np.nan, 1.0]))
    ce("negative class weight", ValueError, r"class_weight: weights must be finite and >= 0, got -1",
       class_weight=np.array([1.0, -1.0, 1.0]))
    ce("class weight of the wrong length", ValueError, r"class_weight: expected shape \(3,\)",
       class_weight=np.ones(4))
    ce("class weight of another dtype", TypeError, r"class_weight: expected dtype float64",
       class_weight=np.ones(3, f32))
    ce("negative sample weight", ValueError, r"sample_weight: weights must be finite", sample_weight=-np.ones(4))
    ce("label smoothing above 1", ValueError, r"Invalid label_smoothing: 1.5", label_smoothing=1.5)
    ce("bad reduction", ValueError, r"Invalid reduction: 'avg'", reduction="avg")
    ce("3-D logits", ValueError, r"logits: expected shape \(N, C\)", logits=np.zeros((2, 2, 3)))
    ce("integer logits", TypeError, r"logits: expected dtype float32 or float64", logits=np.zeros((4, 3), int))
    ce("grad_out read-only", ValueError, r"grad_out is written in place.*read-only", grad_out=lambda w: readonly(w[2]))
    ce("grad_out float32", TypeError, r"grad_out: expected dtype float64", grad_out=np.zeros((4, 3), f32))
    ce("grad_out wrong shape", ValueError, r"grad_out: shape \(3, 4\) does not match", grad_out=np.zeros((3, 4)))
    ce("grad_out non-contiguous", ValueError, r"not C-contiguous", grad_out=np.zeros((4, 6))[:, ::2])
    ce("grad_out aliasing logits", ValueError, r"grad_out and logits share memory",
       logits=lambda w: w[2], grad_out=lambda w: w[2])

    def reg(name, fn, exc, rx, **kw):
        def run(w):
            x, t, g = w
            args = {"grad_out": g}
            args.update({k: (v(w) if callable(v) else v) for k, v in kw.items()})
            fn(args.pop("input", x), args.pop("target", t), **args)
        cases.append((name, _reg_arrays, run, exc, rx))

    reg("mse dtype mix", losses.mse, TypeError, r"target: expected dtype float64", target=np.zeros(6, f32))
    reg("mse shape mismatch", losses.mse, ValueError, r"target: shape \(5,\) does not match", target=np.zeros(5))
    reg("mae list input", losses.mae, TypeError, r"input: expected a numpy.ndarray", input=[1.0] * 6)
    reg("huber negative delta", losses.huber, ValueError, r"Invalid delta: -1", delta=-1.0)
    reg("huber NaN delta", losses.huber, ValueError, r"Invalid delta: nan", delta=float("nan"))
    reg("sample weight wrong length", losses.mse, ValueError, r"sample_weight: expected shape \(6,\)",
        sample_weight=np.ones(5))
    reg("bce negative pos_weight", losses.binary_cross_entropy_with_logits, ValueError,
        r"pos_weight: weights must be finite and >= 0", pos_weight=-2.0)
    reg("bce pos_weight wrong length", losses.binary_cross_entropy_with_logits, ValueError,
        r"pos_weight: expected shape \(6,\)", pos_weight=np.ones(4))
    reg("grad_out is the target", losses.mse, ValueError, r"grad_out and target share memory",
        target=lambda w: w[2])
    reg("grad_out read-only (mae)", losses.mae, ValueError, r"read-only", grad_out=lambda w: readonly(w[2]))

    def hinge(name, exc, rx, **kw):
        def run(w):
            x, y, g = w
            args = {"grad_out": g}
            args.update(kw)
            losses.hinge(x, args.pop("target", y), **args)
        cases.append((name, _ce_arrays, run, exc, rx))

    hinge("hinge label out of range", ValueError, r"target\[3\] = 3 is not a valid class label: expected "
          r"0 <= label < 3$", target=np.array([0, 1, 2, 3]))
    hinge("hinge probabilities", TypeError, r"expected integer class labels, got dtype float64",
          target=np.full((4, 3), 0.3))

    def pen(name, exc, rx, fn):
        def arrays():
            return np.ones(5), np.arange(5.0), np.ones(3, f32)
        cases.append((name, arrays, fn, exc, rx))

    pen("penalty negative l2", ValueError, r"Invalid l2: -0.1",
        lambda w: regularize.add_penalty_grad_(w[0], w[1], l2=-0.1))
    pen("penalty NaN l1", ValueError, r"Invalid l1: nan", lambda w: regularize.add_penalty_grad_(w[0], w[1], l1=np.nan))
    pen("penalty read-only grad", ValueError, r"grads\[0\] is written in place.*read-only",
        lambda w: regularize.add_penalty_grad_(readonly(w[0]), w[1], l2=0.1))
    pen("penalty dtype mix", TypeError, r"params\[0\]: expected dtype float64",
        lambda w: regularize.add_penalty_grad_(w[0], w[1].astype(f32), l2=0.1))
    pen("penalty second pair of another dtype", TypeError, r"grads\[1\]: expected dtype float64",
        lambda w: regularize.add_penalty_grad_([w[0], w[2]], [w[1], w[2].copy()], l2=0.1))
    pen("penalty shape mismatch", ValueError, r"params\[0\]: shape \(4,\) does not match",
        lambda w: regularize.add_penalty_grad_(w[0], w[1][:4], l2=0.1))
    pen("penalty grad is the param", ValueError, r"share memory",
        lambda w: regularize.add_penalty_grad_(w[0], w[0], l2=0.1))
    pen("penalty list lengths", ValueError, r"lists of one length",
        lambda w: regularize.add_penalty_grad_([w[0]], [w[1], w[1]], l2=0.1))
    pen("max_norm zero", ValueError, r"Invalid max_norm: 0", lambda w: regularize.max_norm_(w[0], 0.0))
    pen("max_norm bad axis", ValueError, r"Invalid axis 1 for params\[0\]", lambda w: regularize.max_norm_(w[0], 1.0, 1))
    pen("max_norm read-only", ValueError, r"read-only", lambda w: regularize.max_norm_(readonly(w[0]), 1.0))
    pen("dropout p = 1", ValueError, r"Invalid dropout probability: 1.0 \(expected 0 <= p < 1\)",
        lambda w: dropout(w[1], p=1.0, seed=0, out=w[0]))
    pen("dropout p < 0", ValueError, r"Invalid dropout probability: -0.1",
        lambda w: dropout(w[1], p=-0.1, seed=0, out=w[0]))
    pen("dropout NaN p", ValueError, r"Invalid dropout probability: nan",
        lambda w: dropout_backward(w[1], p=np.nan, seed=0, out=w[0]))
    pen("dropout negative seed", ValueError, r"Invalid seed: expected 0 <= seed < 2\*\*64, got -1",
        lambda w: dropout(w[1], p=0.5, seed=-1, out=w[0]))
    pen("dropout float seed", TypeError, r"Invalid seed: expected an integer",
        lambda w: dropout(w[1], p=0.5, seed=1.5, out=w[0]))
    pen("dropout out dtype", TypeError, r"out: expected dtype float64",
        lambda w: dropout(w[1][:3], p=0.5, seed=1, out=w[2]))
    pen("dropout out read-only", ValueError, r"read-only",
        lambda w: dropout(w[1], p=0.5, seed=1, out=readonly(w[0])))
    pen("dropout partial overlap", ValueError, r"out and x share memory.*may be x itself",
        lambda w: dropout(w[1][:4], p=0.5, seed=1, out=w[1][1:]))
    pen("dropout int input", TypeError, r"x: expected dtype float32 or float64",
        lambda w: dropout(np.arange(5), p=0.5, seed=1, out=w[0]))
    return cases


CASES = _cases()


@pytest.mark.parametrize("name, make, run, exc, rx", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_and_writes_nothing(name, make, run, exc, rx):
    watch = make()
    before = [a.copy() for a in watch]
    with pytest.raises(exc, match=rx):
        run(watch)
    for a, b in zip(watch, before):
        np.testing.assert_array_equal(a, b)
