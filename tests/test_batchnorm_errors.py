"""Bad input to the batch-norm kernels and layer: the right exception and message, raised before anything is
written (every array of the call is compared with its snapshot afterwards)."""
import numpy as np
import pytest

import fastopt
from fastopt.functional import batch_norm_backward, batch_norm_forward
from _arrays import readonly

C = 4


def arrays(dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, C, 5, 5)).astype(dtype)
    a = dict(x=x, gamma=np.ones(C, dtype), beta=np.zeros(C, dtype), rm=np.zeros(C, dtype), rv=np.ones(C, dtype),
             out=np.full_like(x, 7.0), dy=rng.normal(size=x.shape).astype(dtype), dx=np.full_like(x, 7.0),
             dg=np.full(C, 7.0, dtype), db=np.full(C, 7.0, dtype), sm=np.zeros(C), si=np.ones(C))
    return a


def fwd(a, **kw):
    args = dict(training=True, out=a["out"])
    args.update(kw)
    x = args.pop("x", a["x"])
    return batch_norm_forward(x, args.pop("gamma", a["gamma"]), args.pop("beta", a["beta"]),
                              args.pop("rm", a["rm"]), args.pop("rv", a["rv"]), **args)


def bwd(a, **kw):
    args = dict(dx_out=a["dx"], dgamma_out=a["dg"], dbeta_out=a["db"])
    args.update(kw)
    return batch_norm_backward(args.pop("dy", a["dy"]), args.pop("x", a["x"]), args.pop("gamma", a["gamma"]),
                               args.pop("sm", a["sm"]), args.pop("si", a["si"]), **args)


FORWARD_CASES = [
    ("x_1d", lambda a: fwd(a, x=np.zeros(8, np.float32), out=None), ValueError, "x: expected 2 or more dim"),
    ("x_list", lambda a: fwd(a, x=[[1.0, 2.0]], out=None), TypeError, "x: expected a numpy.ndarray"),
    ("x_int", lambda a: fwd(a, x=np.zeros((6, C), np.int32), out=None), TypeError, "x: expected dtype float"),
    ("axis_middle", lambda a: fwd(a, axis=2), ValueError, r"axis: expected 1 \(channels first\) or -1"),
    ("axis_float", lambda a: fwd(a, axis=1.0), TypeError, "axis: expected an integer"),
    ("gamma_C", lambda a: fwd(a, gamma=np.ones(C + 1, np.float32)), ValueError, r"weight: expected shape \(4,\)"),
    ("beta_C", lambda a: fwd(a, beta=np.ones(C - 1, np.float32)), ValueError, r"bias: expected shape \(4,\)"),
    ("gamma_2d", lambda a: fwd(a, gamma=np.ones((1, C), np.float32)), ValueError, "weight: expected shape"),
    ("running_mean_C", lambda a: fwd(a, rm=np.zeros(C + 1, np.float32)), ValueError, "running_mean: expected shape"),
    ("running_var_C", lambda a: fwd(a, rv=np.ones(2, np.float32)), ValueError, "running_var: expected shape"),
    ("channels_last_C", lambda a: fwd(a, axis=-1), ValueError, r"weight: expected shape \(5,\)"),
    ("batch_of_one_2d", lambda a: fwd(a, x=np.ones((1, C), np.float32), out=None), ValueError,
     "more than 1 value per channel when training"),
    ("batch_of_one_4d", lambda a: fwd(a, x=np.ones((1, C, 1, 1), np.float32), out=None), ValueError,
     "more than 1 value per channel"),
    ("gamma_dtype", lambda a: fwd(a, gamma=np.ones(C)), TypeError, "weight: expected dtype float32"),
    ("beta_dtype", lambda a: fwd(a, beta=np.zeros(C, np.float16)), TypeError, "bias: expected dtype float32"),
    ("running_mean_dtype", lambda a: fwd(a, rm=np.zeros(C)), TypeError, "running_mean: expected dtype float32"),
    ("running_mean_readonly", lambda a: fwd(a, rm=readonly(a["rm"])), ValueError,
     "running_mean is written in place.*read-only"),
    ("running_var_strided", lambda a: fwd(a, rv=np.ones(2 * C, np.float32)[::2]), ValueError,
     "running_var is written in place.*not C-contiguous"),
    ("running_mean_swapped", lambda a: fwd(a, rm=np.zeros(C, ">f4")), ValueError, "native byte-order"),
    ("only_running_mean", lambda a: fwd(a, rv=None), ValueError, "pass both or neither"),
    ("eval_without_running", lambda a: fwd(a, rm=None, rv=None, training=False), ValueError,
     "training=False needs running_mean"),
    ("out_dtype", lambda a: fwd(a, out=np.zeros(a["x"].shape)), TypeError, "out: expected dtype float32"),
    ("out_shape", lambda a: fwd(a, out=np.zeros((6, C, 5, 4), np.float32)), ValueError, "out: shape"),
    ("out_readonly", lambda a: fwd(a, out=readonly(a["out"])), ValueError, "out is written in place"),
    ("out_fortran", lambda a: fwd(a, out=np.asfortranarray(a["out"])), ValueError, "out is written in place"),
    ("out_is_x", lambda a: fwd(a, out=a["x"]), ValueError, "out and x share memory"),
    ("out_overlaps_running_mean", lambda a: fwd(a, rm=a["out"].reshape(-1)[:C]), ValueError,
     "out and running_mean share memory"),
    ("running_mean_is_running_var", lambda a: fwd(a, rv=a["rm"]), ValueError, "share memory"),
    ("running_mean_is_gamma", lambda a: fwd(a, rm=a["gamma"]), ValueError, "running_mean and weight share memory"),
    ("momentum", lambda a: fwd(a, momentum=1.5), ValueError, "Invalid momentum: 1.5"),
    ("momentum_none", lambda a: fwd(a, momentum=None), TypeError, "Invalid momentum"),
    ("eps", lambda a: fwd(a, eps=-1e-5), ValueError, "Invalid eps"),
    ("activation", lambda a: fwd(a, activation="tanh"), ValueError, "Invalid activation"),
    ("training_str", lambda a: fwd(a, training="yes"), TypeError, "Invalid training"),
]

BACKWARD_CASES = [
    ("dy_shape", lambda a: bwd(a, dy=a["dy"][:, :, :4]), ValueError, "dy: shape"),
    ("dy_dtype", lambda a: bwd(a, dy=a["dy"].astype(np.float64)), TypeError, "dy: expected dtype float32"),
    ("dy_list", lambda a: bwd(a, dy=a["dy"].tolist()), TypeError, "dy: expected a numpy.ndarray"),
    ("gamma_C", lambda a: bwd(a, gamma=np.ones(C + 1, np.float32)), ValueError, "weight: expected shape"),
    ("save_mean_C", lambda a: bwd(a, sm=np.zeros(C + 1)), ValueError, "save_mean: expected shape"),
    ("save_invstd_C", lambda a: bwd(a, si=np.zeros((C, 1))), ValueError, "save_invstd: expected shape"),
    ("dx_out_is_x", lambda a: bwd(a, dx_out=a["x"]), ValueError, "dx_out and x share memory"),
    ("dx_out_is_dy", lambda a: bwd(a, dx_out=a["dy"]), ValueError, "dx_out and dy share memory"),
    ("dx_out_readonly", lambda a: bwd(a, dx_out=readonly(a["dx"])), ValueError, "dx_out is written in place"),
    ("dx_out_dtype", lambda a: bwd(a, dx_out=a["dx"].astype(np.float64)), TypeError, "dx_out: expected dtype"),
    ("dgamma_readonly", lambda a: bwd(a, dgamma_out=readonly(a["dg"])), ValueError, "dgamma_out is written"),
    ("dgamma_dtype", lambda a: bwd(a, dgamma_out=np.zeros(C)), TypeError, "dgamma_out: expected dtype float32"),
    ("dbeta_C", lambda a: bwd(a, dbeta_out=np.zeros(C + 2, np.float32)), ValueError, "dbeta_out: expected shape"),
    ("dbeta_is_dgamma", lambda a: bwd(a, dbeta_out=a["dg"]), ValueError, "dgamma_out and dbeta_out share memory"),
    ("dgamma_is_gamma", lambda a: bwd(a, dgamma_out=a["gamma"]), ValueError, "dgamma_out and weight share memory"),
    ("axis", lambda a: bwd(a, axis=2), ValueError, "axis: expected 1"),
    ("activation", lambda a: bwd(a, activation="gelu"), ValueError, "Invalid activation"),
    ("batch_of_one", lambda a: bwd(a, x=np.ones((1, C), np.float32), dy=np.ones((1, C), np.float32),
                                   dx_out=None), ValueError, "more than 1 value per channel"),
]


def _check(case, exc, msg):
    a = arrays()
    before = {k: v.copy() for k, v in a.items()}
    with pytest.raises(exc, match=msg):
        case(a)
    for k, v in a.items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} was modified")


@pytest.mark.parametrize("name,case,exc,msg", FORWARD_CASES, ids=[c[0] for c in FORWARD_CASES])
def test_forward_rejects(name, case, exc, msg):
    _check(case, exc, msg)


@pytest.mark.parametrize("name,case,exc,msg", BACKWARD_CASES, ids=[c[0] for c in BACKWARD_CASES])
def test_backward_rejects(name, case, exc, msg):
    _check(case, exc, msg)


def test_valid_call_of_the_table_passes():
    """The table's baseline arguments are valid: each error above comes from the one change it makes."""
    a = arrays()
    y, sm, si = fwd(a)
    assert y is a["out"]
    dx, dg, db = bwd(a, sm=sm, si=si)
    assert dx is a["dx"]


LAYER_CASES = [
    ("num_features", lambda: fastopt.nn.BatchNorm(0), ValueError, "Invalid num_features"),
    ("num_features_float", lambda: fastopt.nn.BatchNorm(4.0), TypeError, "Invalid num_features"),
    ("momentum", lambda: fastopt.nn.BatchNorm(4, momentum=-0.1), ValueError, "Invalid momentum: -0.1"),
    ("eps", lambda: fastopt.nn.BatchNorm(4, eps="1"), TypeError, "Invalid eps"),
    ("dtype", lambda: fastopt.nn.BatchNorm(4, dtype=np.int64), TypeError, "Invalid dtype"),
    ("activation", lambda: fastopt.nn.BatchNorm(4, activation="sigmoid"), ValueError, "Invalid activation"),
    ("affine", lambda: fastopt.nn.BatchNorm(4, affine=1), TypeError, "Invalid affine"),
]


@pytest.mark.parametrize("name,make,exc,msg", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_constructor_rejects(name, make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_layer_errors_leave_state_unchanged():
    bn = fastopt.nn.BatchNorm(C)
    x = np.random.default_rng(1).normal(size=(6, C, 3, 3)).astype(np.float32)
    bn.forward(x)
    state = bn.state_dict()
    with pytest.raises(TypeError, match="layer's dtype"):
        bn.forward(x.astype(np.float64))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn.forward(x[:1, :, :1, :1])
    with pytest.raises(ValueError, match=r"weight: expected shape \(5,\)"):
        bn.forward(np.zeros((6, 5), np.float32))
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    with pytest.raises(RuntimeError, match="before forward"):
        fastopt.nn.BatchNorm(C).backward(x)
