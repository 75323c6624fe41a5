"""fastopt._probe, the benchmarks' roofline loops: what they write, and their limits (a probe that silently did
less work would overstate every %roof figure)."""
import numpy as np
import pytest

from fastopt import _probe


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nin,nout", [(1, 1), (4, 3), (6, 5), (7, 3)])   # Adan's, LAMB's traffic
def test_stream_writes_half_the_sum_of_its_reads_to_every_output(nin, nout, dtype):
    rng = np.random.default_rng(nin * 10 + nout)
    reads = [rng.standard_normal(1001).astype(dtype) for _ in range(nin)]
    writes = [np.zeros(1001, dtype) for _ in range(nout)]
    _probe.stream(reads, writes)
    expected = reads[0].copy()
    for r in reads[1:]:
        expected += r                   # the probe's order of additions, in the arrays' dtype
    expected *= dtype(0.5)
    for w in writes:
        np.testing.assert_array_equal(w, expected)


def test_stream_rejects_counts_it_has_no_loop_for():
    a = [np.ones(8) for _ in range(8)]
    with pytest.raises(ValueError, match="1-7 reads and 1-5 writes"):
        _probe.stream(a[:8], a[:1])
    with pytest.raises(ValueError, match="1-7 reads and 1-5 writes"):
        _probe.stream(a[:1], a[:6])
