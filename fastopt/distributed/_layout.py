r"""The sharded flat parameter space of ZeRO: which elements of which params each rank owns.

Per dtype, the params of that dtype (in group order) are laid end to end in a virtual flat space, each starting on
a multiple of ``BLOCK`` elements (the padding between them is never read), so the space holds ``V`` elements,
:math:`V = \sum_k \lceil n_k / B \rceil B`. Its ``V / B`` blocks are split into N contiguous runs, rank r owning
blocks :math:`[\lfloor rV/(BN) \rfloor, \lfloor (r+1)V/(BN) \rfloor)`: every shard boundary falls on a multiple of
``BLOCK`` inside each param, so a block-quantized state format's blocks never straddle two ranks, and shards
differ by at most one block. A rank's ``pieces`` are the 1-d slices ``p.reshape(-1)[a:b]`` of params it owns.
"""
from dataclasses import dataclass

import numpy as np

BLOCK = 256      # elements: the shard granularity (a multiple of every block-quantized state format's block)


@dataclass(frozen=True)
class Piece:
    """Elements [a, b) of flat param ``index`` (global index, group order), at ``lo`` in its dtype's space."""
    index: int
    a: int
    b: int
    lo: int


class Space:
    """The flat space of one dtype: ``offsets[k]`` of the k-th param of the dtype (global index ``indices[k]``),
    ``size`` V, and per rank the bounds ``bounds[r] = (lo, hi)``."""

    def __init__(self, dtype, indices, sizes, nranks):
        self.dtype = np.dtype(dtype)
        self.indices, self.sizes = list(indices), list(sizes)
        self.offsets, off = [], 0
        for n in self.sizes:
            self.offsets.append(off)
            off += -(-n // BLOCK) * BLOCK
        self.size = off
        blocks = off // BLOCK
        cuts = [(r * blocks // nranks) * BLOCK for r in range(nranks + 1)]
        self.bounds = list(zip(cuts[:-1], cuts[1:]))

    def counts(self):
        return [hi - lo for lo, hi in self.bounds]

    def displs(self):
        return [lo for lo, _ in self.bounds]

    def pieces(self, rank):
        """The Pieces of this dtype owned by ``rank``, in global index order."""
        lo, hi = self.bounds[rank]
        out = []
        for i, n, off in zip(self.indices, self.sizes, self.offsets):
            a, b = max(lo, off) - off, min(hi, off + n) - off
            if b > a:
                out.append(Piece(i, a, b, off + a))
        return out


def spaces(params, nranks):
    """One Space per dtype present in ``params`` (the flat list, group order), float32 first."""
    out = []
    for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        idx = [i for i, p in enumerate(params) if p.dtype == dtype]
        if idx:
            out.append(Space(dtype, idx, [params[i].size for i in idx], nranks))
    return out
