"""The same trajectories as the reference implementations the field uses, for optimizers torch.optim lacks, option
by option, float32 and float64 (test-only peers; each test skips where its peer is absent, CI installs them):

* AdEMAMix: ``pytorch_optimizer.AdEMAMix`` (its single-tensor path, ``foreach=False``);
* Adan: ``pytorch_optimizer.Adan`` (the same path). It seeds ``previous_grad`` with the gradient before
  ``maximize`` negates it, so with maximize=True its first gradient difference is -2 g, not the paper's 0; fastopt
  follows the paper, and is compared with the peer minimizing -f (maximize=False on the negated gradients). Its
  ``previous_grad`` holds -g_{t-1}, fastopt's g_{t-1};
* LARS: ``pytorch_optimizer.LARS`` (the same path; its trust ratio is computed in the dtype, fastopt's norms in
  double: float32 agrees to ~1e-7);
* LAMB: ``pytorch_optimizer.Lamb`` (the same path; ``adam_debias`` is read from its param group, passed through
  its ``**kwargs``; its norms and trust ratio in the dtype: float32 agrees to ~1e-7).
"""
import numpy as np
import pytest

from fastopt.optim._formats import FORMAT_KEYS
import fastopt
from fastopt.optim.specs import SPECS
from _cases_optim import CASES, IDS
from test_optim_reference import make_problem, run_fastopt
from test_optim_torch import run_torch

torch = pytest.importorskip("torch")

PEERS = {s.name: s.peer for s in SPECS if s.peer}     # name: (module, class) of the reference implementation
STATE_SIGN = {("Adan", "previous_grad"): -1.0}       # the peer's state that holds the negated value
GROUP_KWARGS = {("LAMB", "adam_debias")}              # arguments the peer takes through **kwargs into its groups
PEER_CASES = [(c, i) for c, i in zip(CASES, IDS) if c[0] in PEERS]


def run_peer(name, kwargs, params, grads):
    module, cls = PEERS[name]
    if name == "Adan" and kwargs.get("maximize"):           # see the module docstring
        kwargs, grads = dict(kwargs, maximize=False), [[-g for g in gs] for gs in grads]
    return run_torch(name, kwargs, params, grads, cls=getattr(pytest.importorskip(module), cls))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [c for c, _ in PEER_CASES], ids=[i for _, i in PEER_CASES])
def test_trajectory_matches_the_reference_implementation(case, dtype, num_threads):
    name, kwargs = case
    params, grads = make_problem(name, dtype)
    expected, peer = run_peer(name, kwargs, params, grads)
    opt = run_fastopt(name, kwargs, params, grads)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-10, 1e-12)
    for i, (p, e) in enumerate(zip(params, expected)):
        np.testing.assert_allclose(p, e, rtol=rtol, atol=atol, err_msg=f"params[{i}]")
    tstate = peer.state[peer.param_groups[0]["params"][0]]
    for key, value in tstate.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            theirs = STATE_SIGN.get((name, key), 1.0) * value.numpy()
            np.testing.assert_allclose(opt.state[0][key], theirs, rtol=10 * rtol, atol=10 * atol, err_msg=f"state {key}")


def test_defaults_match_the_reference_implementations():
    import inspect
    for name, (module, cls) in PEERS.items():
        theirs = inspect.signature(getattr(pytest.importorskip(module), cls).__init__).parameters
        for key, param in inspect.signature(getattr(fastopt, name).__init__).parameters.items():
            if param.default is inspect.Parameter.empty:
                continue
            if (name, key) in GROUP_KWARGS or key in FORMAT_KEYS:     # fastopt's state formats: its own options
                continue
            assert key in theirs, f"{name}.{key} is not a {module}.{cls} argument"
            assert param.default == theirs[key].default, f"{name}.{key}: {param.default} != {theirs[key].default}"
