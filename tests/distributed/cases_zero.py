"""ZeroRedundancyOptimizer and allreduce_grads_ under mpiexec (run by tests/test_distributed.py as
``mpiexec -n N python -m pytest tests/distributed``; every test is collective: each rank runs it, in the same
order). The reference is one process stepping the averaged gradient (the result of allreduce_grads_)."""
import math

import numpy as np
import pytest

import fastopt
from fastopt import schedules
from fastopt.distributed import BLOCK, ZeroRedundancyOptimizer, allreduce_grads_
from fastopt.optim import OPTIMIZERS

MPI = pytest.importorskip("mpi4py.MPI")
COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()

SHAPES = [(300, 7), (5,), (2, 1000), (3, 3), (257,)]
CONFIGS = [("sgd", {"lr": 0.1}), ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
           ("adam", {"lr": 1e-2, "amsgrad": True}), ("adamw", {"lr": 1e-2}), ("adamax", {}),
           ("nadam", {"weight_decay": 0.1}), ("radam", {"decoupled_weight_decay": True}),
           ("rmsprop", {"momentum": 0.5, "centered": True}), ("adagrad", {"lr_decay": 0.01}), ("lion", {}),
           ("adadelta", {"weight_decay": 0.1}), ("rprop", {}), ("asgd", {"t0": 2}), ("ademamix", {"t_alpha_beta3": 3}),
           ("adan", {"weight_decay": 0.02}), ("schedulefreeadamw", {"warmup_steps": 2, "weight_decay": 0.1}),
           ("schedulefreesgd", {"lr": 0.1})]
SCHEDULE_FREE = [name for name, cls in OPTIMIZERS.items() if cls.spec.interpolation is not None]


def make_params(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def rank_grads(params, t, rank=RANK):
    """Gradients of one rank at step t: multiples of 1/64 in [-1, 1], so that their sum is exact in any order
    (MPI's reduction order differs between algorithms for N > 2); one param without a gradient at t = 2."""
    rng = np.random.default_rng(1000 + 17 * t + rank)
    out = [(rng.integers(-64, 65, p.shape) / 64).astype(p.dtype) for p in params]
    if t == 2:
        out[1] = None
    return out


def averaged(grads):
    avg = [None if g is None else g.copy() for g in grads]
    allreduce_grads_(avg, COMM)
    return avg


def two_groups(params, lr):
    return [{"params": params[:2]}, {"params": params[2:], "lr": lr * 0.5}]


@pytest.mark.parametrize("shard_gradients", [False, True], ids=["zero1", "zero2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,hp", CONFIGS, ids=[f"{n}{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_bit_identical_to_one_process(name, hp, dtype, shard_gradients):
    cls = OPTIMIZERS[name]
    hp = dict(hp)
    lr = hp.pop("lr", 1e-2)
    params, ref = make_params(dtype), make_params(dtype)
    zero = ZeroRedundancyOptimizer(two_groups(params, lr), cls, comm=COMM, shard_gradients=shard_gradients,
                                   lr=lr, **hp)
    single = cls(two_groups(ref, lr), lr=lr, **hp)
    sched_z = schedules.CosineAnnealingLR(zero, T_max=5)
    sched_s = schedules.CosineAnnealingLR(single, T_max=5)
    for t in range(5):
        grads = rank_grads(params, t)
        zero.step(grads)
        single.step(averaged(grads))
        sched_z.step()
        sched_s.step()
        for k, (a, b) in enumerate(zip(params, ref)):
            assert np.array_equal(a, b), (t, k)
    assert zero.param_groups[1]["lr"] == single.param_groups[1]["lr"]


def test_mixed_dtypes_and_random_gradients():
    """float32 and float64 params in one group; unquantized random gradients, averaged by the same allreduce."""
    shapes = [(40, 40), (700,), (3,)]
    params = [p.astype(np.float64) if k == 1 else p for k, p in enumerate(make_params(np.float32, 3, shapes))]
    ref = [p.copy() for p in params]
    zero = ZeroRedundancyOptimizer(params, fastopt.Adam, comm=COMM, lr=1e-2, weight_decay=0.1)
    single = fastopt.Adam(ref, lr=1e-2, weight_decay=0.1)
    rng = np.random.default_rng(RANK)
    for _ in range(4):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        zero.step(grads)
        single.step(averaged(grads))
    tol = 0 if SIZE <= 2 else 1e-6      # N = 3: the sum's order may differ between allreduce and reduce-scatter
    for a, b in zip(params, ref):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_state_is_one_nth():
    params = make_params(np.float32)
    zero = ZeroRedundancyOptimizer(params, fastopt.AdamW, comm=COMM)
    zero.step(rank_grads(params, 0))
    owned = sum(st["exp_avg"].size for st in zero.local_optimizer._state.values())
    total = sum(p.size for p in params)
    assert COMM.allreduce(owned) == total                       # the shards partition the elements
    padded = sum(-(-p.size // BLOCK) * BLOCK for p in params)
    assert owned <= -(-padded // (BLOCK * SIZE)) * BLOCK        # 1/N of the space, within one block
    assert abs(owned - total / SIZE) <= BLOCK * len(params)
    full_bytes = 2 * 4 * total + 8 * len(params)                # exp_avg, exp_avg_sq, step of a single process
    assert COMM.allreduce(zero.local_state_nbytes()) <= full_bytes + 8 * len(params) * SIZE
    for _, piece in zero._pieces:                               # shard cuts on block boundaries of each param
        assert piece.a % BLOCK == 0
        assert piece.b % BLOCK == 0 or piece.b == params[piece.index].size


def test_consolidate_and_reshard(tmp_path_factory):
    params, ref = make_params(np.float32), make_params(np.float32)
    zero = ZeroRedundancyOptimizer(groups_of_lr(params), fastopt.AdamW, comm=COMM, lr=1e-2)
    single = fastopt.AdamW(groups_of_lr(ref), lr=1e-2)
    for t in range(3):
        grads = rank_grads(params, t)
        zero.step(grads)
        single.step(averaged(grads))
    zero.consolidate_state_dict(to=SIZE - 1)
    if RANK == SIZE - 1:
        full, expect = zero.state_dict(), single.state_dict()
        assert full["param_groups"] == expect["param_groups"]
        assert sorted(full["state"]) == sorted(expect["state"])
        for i, st in expect["state"].items():
            for name, value in st.items():
                assert np.array_equal(full["state"][i][name], value), (i, name)
    else:
        with pytest.raises(RuntimeError, match="consolidate_state_dict"):
            zero.state_dict()
    full = COMM.bcast(zero.state_dict() if RANK == SIZE - 1 else None, root=SIZE - 1)
    # reshard onto fewer ranks (a split communicator) and onto one process: all continue as the reference
    sub = COMM.Split(0 if RANK < max(1, SIZE - 1) else MPI.UNDEFINED, RANK)
    if sub != MPI.COMM_NULL:
        p2 = [p.copy() for p in params]
        r2 = [p.copy() for p in ref]
        z2 = ZeroRedundancyOptimizer(groups_of_lr(p2), fastopt.AdamW, comm=sub, lr=5.0)
        z2.load_state_dict(full)
        s2 = fastopt.AdamW(groups_of_lr(r2), lr=5.0)
        s2.load_state_dict(full)
        assert z2.param_groups[0]["lr"] == 2e-2
        for t in range(3, 5):
            g = [None if x is None else x.copy() for x in rank_grads(p2, t, rank=0)]
            z2.step(g)
            s2.step(g)
        for a, b in zip(p2, r2):
            assert np.array_equal(a, b)
        sub.Free()
    zero.step(rank_grads(params, 5))
    with pytest.raises(RuntimeError):
        zero.state_dict()            # stale after a step


def groups_of_lr(params):
    return [{"params": params[:3], "lr": 2e-2}, {"params": params[3:]}]


def test_load_single_process_state_and_errors():
    params = make_params(np.float32)
    single = fastopt.AdamW([p.copy() for p in params], lr=1e-2)
    single.step([np.ones_like(p) for p in params])
    sd = single.state_dict()
    zero = ZeroRedundancyOptimizer(params, fastopt.AdamW, comm=COMM, lr=1e-2)
    bad = {"state": {0: dict(sd["state"][0], exp_avg=sd["state"][0]["exp_avg"][:10])},
           "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match=r"params\[0\] 'exp_avg': shape"):
        zero.load_state_dict(bad)
    bad = {"state": {0: dict(sd["state"][0], exp_avg=sd["state"][0]["exp_avg"].astype(np.float64))},
           "param_groups": sd["param_groups"]}
    with pytest.raises(TypeError, match=r"params\[0\] 'exp_avg': expected dtype float32"):
        zero.load_state_dict(bad)
    assert zero.local_state_nbytes() == 0
    zero.load_state_dict(sd)
    assert zero.local_state_nbytes() > 0


def test_clip_global_norm():
    params, ref = make_params(np.float32), make_params(np.float32)
    for shard in (False, True):
        zero = ZeroRedundancyOptimizer([p for p in params], fastopt.SGD, comm=COMM, shard_gradients=shard, lr=0.1)
        single = fastopt.SGD(ref, lr=0.1)
        grads = rank_grads(params, 0)
        total = zero.step(grads, max_norm=1.0)
        avg = averaged(grads)
        expect = fastopt.clip_grad_norm_(avg, 1.0)
        single.step(avg)
        assert math.isclose(total, expect, rel_tol=1e-12)
        for a, b in zip(params, ref):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_distributed_get_total_norm():
    from fastopt.distributed import get_total_norm
    rng = np.random.default_rng(5)
    whole = [rng.standard_normal(1000) for _ in range(SIZE)]
    for p in (2.0, 1.0, 3.5, math.inf):
        expect = fastopt.get_total_norm(whole, p)
        got = get_total_norm([whole[RANK]], p, comm=COMM)
        assert math.isclose(got, expect, rel_tol=1e-12)


def test_step_errors_write_nothing():
    params = make_params(np.float32)
    before = [p.copy() for p in params]
    zero = ZeroRedundancyOptimizer(params, fastopt.Adam, comm=COMM)
    grads = rank_grads(params, 0)
    with pytest.raises(ValueError, match="expected 5 gradients"):
        zero.step(grads[:4])
    with pytest.raises(TypeError, match=r"grads\[2\] has dtype float64"):
        zero.step(grads[:2] + [grads[2].astype(np.float64)] + grads[3:])
    with pytest.raises(ValueError, match=r"grads\[0\] has shape"):
        zero.step([grads[0].T] + grads[1:])
    zero.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate"):
        zero.step(grads)
    zero.param_groups[0]["lr"] = 1e-3
    if RANK == SIZE - 1:
        grads[0][0, 0] = np.inf
    with pytest.raises(ValueError, match="inf or NaN"):
        zero.step(grads, check_finite=True)             # decided collectively: every rank raises
    assert all(np.array_equal(a, b) for a, b in zip(params, before))


def test_constructor_errors():
    params = make_params(np.float32)
    with pytest.raises(TypeError, match="optimizer_class must be a fastopt optimizer class"):
        ZeroRedundancyOptimizer(params, "adam", comm=COMM)
    with pytest.raises(TypeError, match="comm must be an mpi4py intracommunicator"):
        ZeroRedundancyOptimizer(params, fastopt.Adam, comm="world")
    with pytest.raises(ValueError, match="Invalid beta parameter"):
        ZeroRedundancyOptimizer(params, fastopt.Adam, comm=COMM, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="timeout must be"):
        ZeroRedundancyOptimizer(params, fastopt.Adam, comm=COMM, timeout=0)
    import dataclasses
    spec = dataclasses.replace(fastopt.Adam.spec, elementwise=False)
    NotElementwise = type("NotElementwise", (fastopt.Adam,), {"spec": spec})
    with pytest.raises(ValueError, match="not element-wise"):
        ZeroRedundancyOptimizer(params, NotElementwise, comm=COMM)


def test_tiny_params_some_ranks_own_nothing():
    params, ref = make_params(np.float64, 1, [(3,), (2, 2)]), make_params(np.float64, 1, [(3,), (2, 2)])
    zero = ZeroRedundancyOptimizer(params, fastopt.RMSprop, comm=COMM, shard_gradients=True)
    single = fastopt.RMSprop(ref)
    for t in (0, 1):
        grads = rank_grads(params, t)
        zero.step(grads)
        single.step(averaged(grads))
    assert all(np.array_equal(a, b) for a, b in zip(params, ref))
    assert COMM.allreduce(int(zero.local_state_nbytes() > 0)) == min(SIZE, 2)     # two blocks: one per param


def test_add_param_group():
    params, ref = make_params(np.float32), make_params(np.float32)
    zero = ZeroRedundancyOptimizer(params[:3], fastopt.Lion, comm=COMM, lr=1e-3)
    single = fastopt.Lion(ref[:3], lr=1e-3)
    zero.step(rank_grads(params[:3], 0))
    single.step(averaged(rank_grads(ref[:3], 0)))
    zero.add_param_group({"params": params[3:], "lr": 1e-2})
    single.add_param_group({"params": ref[3:], "lr": 1e-2})
    grads = rank_grads(params, 1)
    zero.step(grads)
    single.step(averaged(grads))
    assert all(np.array_equal(a, b) for a, b in zip(params, ref))


@pytest.mark.parametrize("name", SCHEDULE_FREE)
def test_schedule_free_modes_state_and_resume(name):
    """train() / eval() through the shards give the single process's x and y bit for bit; the consolidated state
    (with the float64 aux pair and the mode) is the single process's, and a resharded resume continues as it."""
    cls = OPTIMIZERS[name]
    params, ref = make_params(np.float32), make_params(np.float32)
    zero = ZeroRedundancyOptimizer(two_groups(params, 0.05), cls, comm=COMM, lr=0.05, warmup_steps=2)
    single = cls(two_groups(ref, 0.05), lr=0.05, warmup_steps=2)
    for t in range(3):
        grads = rank_grads(params, t)
        zero.step(grads)
        single.step(averaged(grads))
    zero.eval()
    single.eval()
    assert not zero.train_mode and all(np.array_equal(a, b) for a, b in zip(params, ref))
    with pytest.raises(RuntimeError, match="eval mode"):
        zero.step(rank_grads(params, 3))
    assert all(np.array_equal(a, b) for a, b in zip(params, ref))         # the refused step wrote nothing
    zero.consolidate_state_dict(to=0)
    full = COMM.bcast(zero.state_dict() if RANK == 0 else None, root=0)
    p2 = [p.copy() for p in params]              # x, as saved
    expect = single.state_dict()
    assert full["train_mode"] is False and sorted(full["state"]) == sorted(expect["state"])
    for i, st in expect["state"].items():
        for key, value in st.items():
            assert np.array_equal(full["state"][i][key], value), (i, key)
    zero.train()
    single.train()
    assert zero.train_mode and all(np.array_equal(a, b) for a, b in zip(params, ref))
    resumed = ZeroRedundancyOptimizer(two_groups(p2, 0.05), cls, comm=COMM, lr=0.05, warmup_steps=2)
    resumed.load_state_dict(full)                # in eval mode, as saved
    assert not resumed.train_mode
    resumed.train()
    assert all(np.array_equal(a, b) for a, b in zip(p2, ref))
    for t in range(3, 5):
        grads = rank_grads(p2, t)
        resumed.step(grads)
        single.step(averaged(grads))
    assert all(np.array_equal(a, b) for a, b in zip(p2, ref))


def test_modes_only_for_schedule_free():
    zero = ZeroRedundancyOptimizer(make_params(np.float32), fastopt.AdamW, comm=COMM)
    with pytest.raises(TypeError, match="no train"):
        zero.eval()
