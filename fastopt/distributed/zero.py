r"""``ZeroRedundancyOptimizer``: ZeRO stage 1 and 2 over MPI (torch's ``ZeroRedundancyOptimizer``, NumPy manners).

Every rank keeps the full params. Each param group's elements of each dtype form a flat space sharded into N
block-aligned contiguous runs (``_layout.py``); rank r holds the optimizer state of its run only, in a local
``optimizer_class`` instance built over 1-d views ``p.reshape(-1)[a:b]`` of the slices it owns (views share the
params' memory, so its fused step writes the params in place). One step:

.. math::
    \bar g = \frac{1}{N}\sum_r g^{(r)} \;\text{(allreduce; ZeRO-2: reduce-scatter, rank r receives its run only)},
    \qquad \theta_{[lo_r, hi_r)} \leftarrow \text{step}(\theta_{[lo_r, hi_r)}, \bar g_{[lo_r, hi_r)}),
    \qquad \theta \leftarrow \text{allgather}_r\, \theta_{[lo_r, hi_r)}

Every optimizer whose rule is element-wise (``OptimizerSpec.elementwise``: all of fastopt's) gives, bit for bit,
the params a single process computes stepping the averaged gradient. State per rank: 1/N of the single-process
state, within one block per param group and dtype. Faults: see ``_comm.py``.
"""
import math
import time

import numpy as np

from fastopt._validation import check_flag
from fastopt.distributed import _comm, _zero_state
from fastopt.distributed._layout import spaces
from fastopt.distributed.clip import clip_grad_norm_

__all__ = ["ZeroRedundancyOptimizer"]


def _check_class(optimizer_class):
    from fastopt.optim import Optimizer
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)
            and optimizer_class.spec is not None):
        raise TypeError(f"optimizer_class must be a fastopt optimizer class (e.g. fastopt.AdamW), "
                        f"got {optimizer_class!r}")
    if not optimizer_class.spec.elementwise:
        raise ValueError(f"optimizer_class {optimizer_class.__name__} has state that is not element-wise: its "
                         "step cannot be sharded by ZeroRedundancyOptimizer")
    return optimizer_class


class ZeroRedundancyOptimizer:
    """``ZeroRedundancyOptimizer(params, optimizer_class=fastopt.AdamW, comm=None, shard_gradients=False, *,
    timeout=None, **defaults)``: params (arrays or group dicts) and ``defaults`` as ``optimizer_class`` takes them
    (checked by it); ``comm`` an mpi4py intracommunicator (None: COMM_WORLD); ``shard_gradients=True`` is ZeRO-2;
    ``timeout``: seconds a collective waits for the other ranks before aborting (None: FASTOPT_MPI_TIMEOUT or 300).
    Every rank must construct it with the same params (shapes, dtypes, groups) and call every method collectively.

    ``param_groups`` are the groups of the full params (schedules write ``group["lr"]``; the local optimizer reads
    them at every step). ``local_optimizer`` is the rank's shard optimizer. ``timings`` holds the seconds of the
    last step's phases: ``reduce`` (gradient communication), ``update`` (the local fused step, with clipping) and
    ``gather`` (the params' allgather).
    """

    def __init__(self, params, optimizer_class=None, comm=None, shard_gradients=False, *, timeout=None, **defaults):
        if optimizer_class is None:
            from fastopt.optim import AdamW as optimizer_class
        self.optimizer_class = _check_class(optimizer_class)
        self.comm = _comm.check_comm(comm)
        self.shard_gradients = check_flag(shard_gradients, "shard_gradients")
        self.timeout = _comm.check_timeout(timeout)
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        self._full = optimizer_class(params, **defaults)     # checks params and hyperparameters; never stepped
        self.defaults = self._full.defaults
        self._spaces, self._buffers, self._shards, self._pieces, self._grad_views = [], [], [], [], []
        self._local = None
        self._consolidated = None
        self.timings = {}
        for gi in range(len(self._full.param_groups)):
            self._shard_group(gi)

    # ------------------------------------------------------------------ layout
    def _shard_group(self, gi):
        """Lays out group ``gi``, adds its owned slices to the local optimizer (built at the first group)."""
        params = self._full._params
        start = sum(len(g["params"]) for g in self._full.param_groups[:gi])
        group = self._full.param_groups[gi]
        views = []
        for space in spaces(group["params"], self.world_size):
            space.indices = [start + k for k in space.indices]
            lo, hi = space.bounds[self.rank]
            self._spaces.append(space)
            self._buffers.append(np.zeros(space.size, space.dtype))
            shard = np.zeros(hi - lo, space.dtype) if self.shard_gradients else None
            self._shards.append(shard)
            for piece in space.pieces(self.rank):
                self._pieces.append((len(self._spaces) - 1, piece))
                views.append(params[piece.index].reshape(-1)[piece.a:piece.b])
                source, base = (shard, lo) if shard is not None else (self._buffers[-1], 0)
                self._grad_views.append(source[piece.lo - base:piece.lo - base + piece.b - piece.a])
        local_group = {k: v for k, v in group.items() if k != "params"}
        local_group["params"] = views
        if self._local is None:
            self._local = self.optimizer_class([local_group], **self.defaults)
        else:
            self._local.add_param_group(local_group)

    def add_param_group(self, param_group):
        """Adds a group (collectively: every rank the same); it is sharded on its own, the others stay."""
        self._full.add_param_group(param_group)
        self._shard_group(len(self._full.param_groups) - 1)

    @property
    def param_groups(self):
        return self._full.param_groups

    @property
    def params(self):
        return self._full.params

    @property
    def local_optimizer(self):
        return self._local

    # ------------------------------------------------------------------ Schedule-Free modes
    @property
    def train_mode(self):
        """A Schedule-Free ``optimizer_class``'s mode (see ``ScheduleFreeOptimizer``): True while the params hold y."""
        return self._modes().train_mode

    def train(self):
        """Every param from x to y (collectively): each rank moves its own run, then the params' allgather."""
        self._switch(self._modes().train)

    def eval(self):
        """Every param from y to x, the point to evaluate (collectively), as ``train()``."""
        self._switch(self._modes().eval)

    def _modes(self):
        if self.optimizer_class.spec.interpolation is None:
            raise TypeError(f"{self.optimizer_class.__name__} has no train() / eval() modes (only the Schedule-Free "
                            "optimizers have)")
        return self._local

    def _switch(self, move):
        self._sync_groups()
        self._local.checked_betas()           # the same on every rank: raised before anything is sent or moved
        self._consolidated = None
        with _comm.guarded(self.comm, "ZeroRedundancyOptimizer.train/eval"):
            move()
            self._allgather()

    def local_state_nbytes(self):
        """Bytes of optimizer state this rank holds (its shard's slot arrays and per-param scalars)."""
        return sum(v.nbytes for st in self._local._state.values() for v in st.values() if isinstance(v, np.ndarray))

    # ------------------------------------------------------------------ step
    def _check_step(self, grads, max_norm, norm_type):
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays aligned with the params, got {type(grads).__name__}")
        params = self._full._params
        if len(grads) != len(params):
            raise ValueError(f"expected {len(params)} gradients (one per param, in group order), got {len(grads)}")
        for i, (g, p) in enumerate(zip(grads, params)):
            if g is None:
                continue
            if not isinstance(g, np.ndarray):
                raise TypeError(f"grads[{i}] must be a numpy.ndarray or None, got {type(g).__name__}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype}, params[{i}] has {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape}, params[{i}] has {p.shape}")
        for gi, group in enumerate(self._full.param_groups):
            self._full._pack(group, gi)                   # hyperparameters as a schedule left them
        if max_norm is not None and not (float(max_norm) >= 0.0):
            raise ValueError(f"Invalid max_norm: {max_norm!r} (expected a real number >= 0)")

    def step(self, grads, *, max_norm=None, norm_type=2.0, check_finite=False):
        """One data-parallel step from this rank's ``grads`` (aligned with ``params``, None: no gradient; every
        rank the same None pattern). ``max_norm``: clip the averaged gradient to this global norm first (the norm
        is returned; None: no clipping, returns None). ``check_finite=True``: a non-finite averaged gradient on any
        rank raises ValueError on every rank before anything is written. Arguments are checked before anything is
        sent; an exception after that aborts the communicator (the other ranks would wait forever)."""
        self._check_step(grads, max_norm, norm_type)
        if self.optimizer_class.spec.interpolation is not None and not self._local.train_mode:
            raise RuntimeError(f"{self.optimizer_class.__name__}.step() called in eval mode (the params hold x): "
                               "call train() first; nothing was written")
        check_finite = check_flag(check_finite, "check_finite")
        self._consolidated = None
        with _comm.guarded(self.comm, "ZeroRedundancyOptimizer.step"):
            t0 = time.perf_counter()
            local_grads = self._reduce(grads)
            t1 = time.perf_counter()
            if check_finite:
                self._check_finite(local_grads)
            total = None
            if max_norm is not None:
                total = clip_grad_norm_([g for g in local_grads if g is not None], max_norm, norm_type,
                                        comm=self.comm, timeout=self.timeout)
            self._sync_groups()
            self._local.step(local_grads)
            t2 = time.perf_counter()
            self._allgather()
            self.timings = {"reduce": t1 - t0, "update": t2 - t1, "gather": time.perf_counter() - t2}
        return total

    def _sync_groups(self):
        """The local groups take the full groups' hyperparameters (schedules and users write the full ones)."""
        for group, local in zip(self._full.param_groups, self._local.param_groups):
            for k, v in group.items():
                if k != "params":
                    local[k] = v

    def _reduce(self, grads):
        """Packs the gradients into each space's buffer (padding and None: zeros), sums them across ranks
        (allreduce, or reduce-scatter into the rank's shard; blocking, under the watchdog's deadline), divides the owned run by N; returns the local
        optimizer's gradients (views of the owned run)."""
        MPI = _comm.mpi()
        n = self.world_size
        with _comm.deadline(self.comm, self.timeout, "the gradient reduction"):
            for space, buf, shard in zip(self._spaces, self._buffers, self._shards):
                for i, off, size in zip(space.indices, space.offsets, space.sizes):
                    if grads[i] is None:
                        buf[off:off + size] = 0
                    else:
                        buf[off:off + size] = grads[i].reshape(-1)
                if shard is None:
                    self.comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)
                else:
                    self.comm.Reduce_scatter(buf, shard, space.counts(), MPI.SUM)
        for space, buf, shard in zip(self._spaces, self._buffers, self._shards):
            lo, hi = space.bounds[self.rank]
            owned = shard if shard is not None else buf[lo:hi]
            np.divide(owned, n, out=owned)
        return [None if grads[piece.index] is None else view
                for (_, piece), view in zip(self._pieces, self._grad_views)]

    def _check_finite(self, local_grads):
        MPI = _comm.mpi()
        flag = np.array([all(g is None or np.isfinite(g).all() for g in local_grads)], dtype=np.int32)
        with _comm.deadline(self.comm, self.timeout, "check_finite"):
            self.comm.Allreduce(MPI.IN_PLACE, flag, MPI.MIN)
        if not flag[0]:
            raise _NonFinite("the averaged gradient holds inf or NaN (check_finite=True): nothing was written")

    def _allgather(self):
        """Each rank's updated run to every rank: packed into the space's buffer, MPI_Iallgatherv in place, the
        other ranks' runs copied back into the params."""
        from mpi4py.util.dtlib import from_numpy_dtype
        MPI = _comm.mpi()
        params = self._full._params
        for k, piece in self._pieces:
            self._buffers[k][piece.lo:piece.lo + piece.b - piece.a] = params[piece.index].reshape(-1)[piece.a:piece.b]
        with _comm.deadline(self.comm, self.timeout, "the params' allgather"):
            for space, buf in zip(self._spaces, self._buffers):
                self.comm.Allgatherv(MPI.IN_PLACE, [buf, space.counts(), space.displs(),
                                                    from_numpy_dtype(space.dtype)])
        for space, buf in zip(self._spaces, self._buffers):
            lo, hi = space.bounds[self.rank]
            for i, off, size in zip(space.indices, space.offsets, space.sizes):
                flat = params[i].reshape(-1)
                a, b = min(max(lo - off, 0), size), min(max(hi - off, 0), size)   # the run owned here
                flat[:a] = buf[off:off + a]
                flat[b:] = buf[off + b:off + size]

    # ------------------------------------------------------------------ state
    def consolidate_state_dict(self, to=0):
        """Gathers the full state on rank ``to`` (collectively); afterwards ``state_dict()`` on that rank returns
        it, in ``optimizer_class``'s own format (loadable by a single process or any number of ranks)."""
        if isinstance(to, bool) or not isinstance(to, (int, np.integer)) or not 0 <= to < self.world_size:
            raise ValueError(f"to must be a rank in [0, {self.world_size}), got {to!r}")
        self._consolidated = _zero_state.consolidate(self, int(to))

    def state_dict(self):
        """The full state consolidated on this rank by ``consolidate_state_dict(to=this rank)`` since the last
        step; RuntimeError otherwise (as torch)."""
        if self._consolidated is None:
            raise RuntimeError(f"Optimizer state has not been consolidated on rank {self.rank}: call "
                               "consolidate_state_dict(to=...) on all ranks after the last step first")
        return self._consolidated

    def local_state_dict(self):
        """This rank's shard state: the local optimizer's ``state_dict()``."""
        return self._local.state_dict()

    def load_state_dict(self, state_dict):
        """Loads a full state (a consolidated one from any number of ranks, or a single process's
        ``optimizer_class.state_dict()``): every rank takes its shard. Checked first (ValueError/TypeError naming
        the entry); nothing changes on an error."""
        _zero_state.load(self, state_dict)
        self._consolidated = None

    def __repr__(self):
        return f"ZeroRedundancyOptimizer(rank {self.rank} of {self.world_size}, {self._full!r})"


class _NonFinite(_comm.AgreedError, ValueError):
    """Raised on every rank alike: not a fault, so it does not abort the communicator."""
