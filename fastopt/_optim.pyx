# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-sources: runtime_client.c quantize.c
# csrc-families: optim
"""Cython layer of the optimizer family: validates arrays at C speed, then makes one GIL-free call into C.

A ``StepPlan`` is the C view of the tensors of one parameter group and one dtype (pointers to params, state arrays
and step counters), built when the group or its state changes and reused by every step. Each step binds the
gradients (checked against their params: type, dtype, shape, memory overlap), optionally checks them for
non-finite values, and runs the fused kernel. Nothing is written before every check of the step has passed.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset

import numpy as np

from fastopt._validation import kernel_input

from fastopt._contract cimport IntervalSet, overlap, plain
from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "quantize.h" nogil:
    enum: FO_QBLOCK_INT8, FO_QBLOCK_INT4

cdef extern from "optim.h" nogil:
    enum: FO_MAX_SLOTS
    enum: FO_OPTIM_TILE
    ctypedef struct fo_tensor:
        void *param
        const void *grad
        void *state[FO_MAX_SLOTS]
        int64_t numel
        int64_t *step
        double *aux
        int fresh
        int ndim
        double coef[6]
        unsigned char format[FO_MAX_SLOTS]
        unsigned char is_signed[FO_MAX_SLOTS]
        float *absmax[FO_MAX_SLOTS]
        unsigned char param_format
        unsigned char grad_format
        unsigned char compensation
        uint16_t *comp
        uint64_t round_seed
    enum: FO_STATE_NATIVE, FO_STATE_BF16, FO_STATE_INT8, FO_STATE_INT4
    enum: FO_ARRAY_NATIVE, FO_ARRAY_BF16
    enum: FO_COMP_NONE, FO_COMP_KAHAN, FO_COMP_STOCHASTIC
    ctypedef struct fo_hparams:       # the fields: FO_HPARAM_FIELDS, reached by index (fo_optim_hparam_set)
        pass
    int fo_optim_step(int algo, int dtype, fo_tensor *ts, int64_t ntensors, const fo_hparams *hp, int nthreads)
    int fo_optim_all_finite_f32(const float *x, int64_t n, int nthreads)
    int fo_optim_all_finite_f64(const double *x, int64_t n, int nthreads)
    int fo_optim_all_finite_bf16(const uint16_t *x, int64_t n, int nthreads)
    int fo_optim_required_slots(int algo, const fo_hparams *hp)
    const char *fo_optim_algo_name(int algo)
    const char *fo_optim_hparam_name(int f)
    int fo_optim_hparam_is_flag(int f)
    void fo_optim_hparam_set(fo_hparams *hp, int f, double v)
    double fo_optim_hparam_get(const fo_hparams *hp, int f)
    enum: FO_ALGO_COUNT, FO_NEEDS_AUX, FO_HPARAM_COUNT
    int fo_sparse_adam_step(int dtype, void *param, void *exp_avg, void *exp_avg_sq, int64_t n_cols,
                            const int64_t *rows, const int64_t *starts, int64_t nu, const int64_t *order,
                            const void *grad, int64_t step, const fo_hparams *hp, int nthreads)
    ctypedef struct fo_adafactor:
        void *param
        const void *grad
        void *row_var
        void *col_var
        void *variance
        void *row_mean
        int64_t batch, rows, cols
        int factored, maximize
        double w, rho, eps1, eps2, d, decay
    int fo_adafactor_step(int dtype, fo_adafactor *a, int nthreads)

# Algorithm ids by name, from csrc/optim.h's one list (FO_OPTIM_ALGOS): {"sgd": 0, "adam": 1, ...}.
ALGOS = {fo_optim_algo_name(a).decode(): a for a in range(FO_ALGO_COUNT)}
# The state-slot bits of a required-slots mask (the bit above them, FO_NEEDS_AUX, is the scalar aux state).
MAX_SLOTS, SLOT_MASK = FO_MAX_SLOTS, FO_NEEDS_AUX - 1
OPTIM_TILE = FO_OPTIM_TILE     # the largest tensor whose norm sweep and step run back to back in cache

cdef int _REQUIRED_FLAGS = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED


def _bfloat16_typenum():
    """The type number of ml_dtypes' bfloat16 (-2 where ml_dtypes is missing: no array has it)."""
    try:
        import ml_dtypes
    except ImportError:
        return -2
    return np.dtype(ml_dtypes.bfloat16).num


cdef extern from "optim_formats.h" nogil:
    int fo_optim_qcodec_exact(int bits, int is_signed)
    int fo_optim_qcodec_encode(const float *x, int64_t n, int bits, int is_signed, uint8_t *codes, float *absmax)

cdef int _BF16 = _bfloat16_typenum()

# State formats (csrc/optim.h FO_STATE_*): code by name, and the elements per absmax block of the quantized ones.
STATE_FORMATS = {"native": FO_STATE_NATIVE, "bfloat16": FO_STATE_BF16, "int8": FO_STATE_INT8, "int4": FO_STATE_INT4}
QUANT_BLOCKS = {FO_STATE_INT8: FO_QBLOCK_INT8, FO_STATE_INT4: FO_QBLOCK_INT4}
# Compensations of a bfloat16 param's store (csrc/optim.h FO_COMP_*), by name.
COMPENSATIONS = {"none": FO_COMP_NONE, "kahan": FO_COMP_KAHAN, "stochastic": FO_COMP_STOCHASTIC}


def qcodec_exact(int bits, bint is_signed):
    """True if the optimizer's vectorized int8/int4 codec runs for that map (csrc/optim_formats_kernels.inc: its
    bucket table passed the build's check), False if the slower fo_quantize_block stands in (for the tests)."""
    return fo_optim_qcodec_exact(bits, is_signed) == 1


def qcodec_encode(cnp.ndarray x, int bits, bint is_signed):
    """(codes, absmax) of one block x (float32, C-contiguous, at most the format's block) by the active path's
    vectorized codec, or None where fo_quantize_block would stand in (zeros, inf or NaN); for the tests."""
    cdef cnp.ndarray[cnp.float32_t, ndim=1, mode="c"] xs = x
    cdef Py_ssize_t n = xs.shape[0]
    cdef cnp.ndarray[cnp.uint8_t, ndim=1, mode="c"] codes = np.zeros(n if bits == 8 else (n + 1) // 2, np.uint8)
    cdef float absmax = 0
    if bits not in (4, 8) or n > (FO_QBLOCK_INT8 if bits == 8 else FO_QBLOCK_INT4):
        raise ValueError(f"qcodec_encode: bits must be 8 or 4 and x at most one block, got {bits} and {n}")
    if not fo_optim_qcodec_encode(&xs[0] if n else NULL, n, bits, is_signed, &codes[0] if codes.shape[0] else NULL,
                                  &absmax):
        return None
    return codes, absmax


def format_sizes(int fmt, Py_ssize_t numel):
    """(elements of the codes array, elements of the absmax array, or 0 without one) of a state slot of `numel`
    values stored in format `fmt` (a STATE_FORMATS code); the codes' dtype is the param's (native), bfloat16
    (BF16) or uint8 (INT8, INT4: two codes per byte)."""
    if fmt == FO_STATE_INT8:
        return numel, (numel + FO_QBLOCK_INT8 - 1) // FO_QBLOCK_INT8
    if fmt == FO_STATE_INT4:
        return (numel + 1) // 2, (numel + FO_QBLOCK_INT4 - 1) // FO_QBLOCK_INT4
    return numel, 0


cdef bint _plain_slot(cnp.ndarray a, int typenum, Py_ssize_t size):
    """a is a writeable, C-contiguous, aligned array of `size` elements of `typenum` (-1: any 2-byte type)."""
    if typenum >= 0 and cnp.PyArray_TYPE(a) != typenum:
        return False
    if typenum < 0 and cnp.PyArray_ITEMSIZE(a) != 2:
        return False
    return cnp.PyArray_SIZE(a) == size and (cnp.PyArray_FLAGS(a) & _REQUIRED_FLAGS) == _REQUIRED_FLAGS \
        and cnp.PyArray_ISWRITEABLE(a)


include "_optim_hparams.pxi"
include "_optim_functional.pxi"


cdef class StepPlan:
    """Tensors of one parameter group and dtype, as C sees them.

    params: the group's arrays (validated writable, C-contiguous, aligned, native float32/float64, one dtype);
    index: each param's position in the optimizer's flat parameter list (names grads[i] in errors);
    positions, group_len: each param's position in its group's list, and that list's length;
    states: one tuple per param of up to 3 state arrays (or None: no state yet), in the algorithm's slot order;
    steps: one 0-d int64 array per param (its step counter, or None); aux: 0-d float64 arrays or None;
    fresh: 1 where state slot 0 holds no history yet (SGD momentum buffer just created);
    formats: None (all native) or, per param, None or a tuple of (STATE_FORMATS code, signed) per slot;
    absmax: None or, per param, None or a tuple of the float32 absmax array (or None) per slot (int8, int4);
    stores: None (round to nearest: no bfloat16 param) or, per param, None or (COMPENSATIONS code, the Kahan buffer
    or None, the stochastic rounding's seed): how its bfloat16 param (which steps in float32, in a float32 plan:
    its native state is float32, and takes a bfloat16 or float32 gradient) and bfloat16 state are rounded.
    """
    cdef fo_tensor *ts
    cdef Py_ssize_t n
    cdef int dtype
    cdef int algo
    cdef readonly list params
    cdef readonly list index
    cdef list positions      # each param's position in its group's list
    cdef Py_ssize_t group_len
    cdef list keep           # state arrays and step counters, kept alive while C holds their pointers
    cdef list bound          # the arrays bound as grads by the last bind() (copies included)
    cdef bint is_bound

    def __cinit__(self, int algo, list params, list index, list positions, Py_ssize_t group_len,
                  list states, list steps, list aux, list fresh, list formats=None, list absmax=None,
                  list stores=None):
        cdef Py_ssize_t k, s
        cdef cnp.ndarray p, a
        self.algo = algo
        self.params = params
        self.index = index
        self.positions = positions
        self.group_len = group_len
        self.n = len(params)
        self.keep = [states, steps, aux, absmax, stores]
        self.bound = [None] * self.n
        self.is_bound = False
        self.ts = <fo_tensor *>calloc(self.n if self.n > 0 else 1, sizeof(fo_tensor))
        if self.ts == NULL:
            raise MemoryError()
        self.dtype = 1
        for k in range(self.n):
            p = params[k]
            self.ts[k].param = cnp.PyArray_DATA(p)
            self.ts[k].numel = cnp.PyArray_SIZE(p)
            self.ts[k].ndim = cnp.PyArray_NDIM(p)
            if stores is not None and stores[k] is not None:
                self._bind_store(k, p, stores[k], index[k])
            self.dtype = 1 if cnp.PyArray_TYPE(p) == cnp.NPY_FLOAT64 else 0
            self._bind_state(k, p, states[k], None if formats is None else formats[k],
                             None if absmax is None else absmax[k], index[k])
            if steps[k] is not None:
                a = steps[k]
                self.ts[k].step = <int64_t *>cnp.PyArray_DATA(a)
            if aux[k] is not None:
                a = aux[k]
                self.ts[k].aux = <double *>cnp.PyArray_DATA(a)
            self.ts[k].fresh = 1 if fresh[k] else 0

    cdef _bind_store(self, Py_ssize_t k, cnp.ndarray p, tuple info, object where):
        """Tensor k's compensation and rounding seed from ``info``; a bfloat16 param's format and Kahan buffer."""
        cdef int comp = info[0]
        cdef cnp.ndarray c
        self.ts[k].compensation = comp
        self.ts[k].round_seed = <uint64_t>info[2]
        if cnp.PyArray_TYPE(p) != _BF16:
            return
        if not _plain_slot(p, -1, cnp.PyArray_SIZE(p)):
            raise ValueError(f"params[{where}]: not a bfloat16 array the step can write in place")
        self.ts[k].param_format = FO_ARRAY_BF16
        if comp == FO_COMP_KAHAN:
            if info[1] is None or not _plain_slot(info[1], cnp.PyArray_TYPE(p), cnp.PyArray_SIZE(p)):
                raise ValueError(f"optimizer state of params[{where}]: no Kahan buffer of its dtype and size")
            c = info[1]
            self.ts[k].comp = <uint16_t *>cnp.PyArray_DATA(c)

    cdef _bind_state(self, Py_ssize_t k, cnp.ndarray p, tuple st, tuple fmts, tuple absmax, object where):
        """Points tensor k's slots at the arrays of `st`, each checked against the param and its format."""
        cdef Py_ssize_t s, codes, blocks, numel = cnp.PyArray_SIZE(p)
        cdef int fmt, typenum
        cdef int work = cnp.NPY_FLOAT32 if self.ts[k].param_format == FO_ARRAY_BF16 else cnp.PyArray_TYPE(p)
        cdef cnp.ndarray a, m
        for s in range(FO_MAX_SLOTS):
            if st is None or s >= len(st) or st[s] is None:
                continue
            a = st[s]
            fmt = FO_STATE_NATIVE if fmts is None or fmts[s] is None else fmts[s][0]
            codes, blocks = format_sizes(fmt, numel)
            typenum = {FO_STATE_NATIVE: work, FO_STATE_BF16: -1}.get(fmt, cnp.NPY_UINT8)
            if not _plain_slot(a, typenum, codes) or (fmt != FO_STATE_NATIVE and work != cnp.NPY_FLOAT32):
                raise ValueError(f"optimizer state of params[{where}] slot {s} does not match the param")
            if blocks > 0:
                m = absmax[s] if absmax is not None else None
                if m is None or not _plain_slot(m, cnp.NPY_FLOAT32, blocks):
                    raise ValueError(f"optimizer state of params[{where}] slot {s}: no absmax of {blocks} float32")
                self.ts[k].absmax[s] = <float *>cnp.PyArray_DATA(m)
            self.ts[k].state[s] = cnp.PyArray_DATA(a)
            self.ts[k].format[s] = fmt
            self.ts[k].is_signed[s] = 1 if fmt != FO_STATE_NATIVE and fmts[s][1] else 0

    def __dealloc__(self):
        free(self.ts)

    cpdef bint matches(self, list group_params):
        """True if `group_params` still holds the very arrays this plan was built for, unmoved and writeable."""
        cdef Py_ssize_t k
        cdef cnp.ndarray p
        if len(group_params) != self.group_len:
            return False
        for k in range(self.n):
            if group_params[<Py_ssize_t>self.positions[k]] is not self.params[k]:
                return False
            p = self.params[k]
            if cnp.PyArray_DATA(p) != self.ts[k].param or not cnp.PyArray_ISWRITEABLE(p):
                return False
        return True

    cpdef bint has_slots(self, int mask):
        """True if every tensor that has state has each slot of bitmask `mask` (an option may need a new one)."""
        cdef Py_ssize_t k
        cdef int s
        for k in range(self.n):
            if self.ts[k].step == NULL:
                continue
            for s in range(FO_MAX_SLOTS):
                if (mask >> s) & 1 and self.ts[k].state[s] == NULL:
                    return False
        return True

    def bind(self, list grads, IntervalSet written not None):
        """Checks grads[index[k]] against params[k] for every tensor and records its pointer; writes nothing.

        Returns False (binding nothing) if a param with a gradient has no state yet: the caller creates it,
        rebuilds the plan and binds again.

        A grad may be None (the param is skipped, as torch skips params whose .grad is None), read-only, or
        non-contiguous / byte-swapped (then copied once: an input, so the copy loses nothing).
        """
        cdef Py_ssize_t k, d, i
        cdef cnp.ndarray p, g
        cdef object obj
        self.is_bound = False
        for k in range(self.n):
            i = self.index[k]
            obj = grads[i]
            if obj is None:
                self.bound[k] = None
                continue
            if self.ts[k].step == NULL:
                return False
            p = self.params[k]
            if not cnp.PyArray_Check(obj):
                raise TypeError(f"grads[{i}]: expected a numpy.ndarray, got {type(obj).__name__}")
            g = obj
            if cnp.PyArray_TYPE(g) != cnp.PyArray_TYPE(p) and not (
                    self.dtype == 0 and cnp.PyArray_TYPE(g) in (cnp.NPY_FLOAT32, _BF16)):
                also = " or float32" if self.ts[k].param_format == FO_ARRAY_BF16 else (
                    " or bfloat16" if self.dtype == 0 else "")
                raise TypeError(f"grads[{i}]: expected dtype {p.dtype} (the dtype of params[{i}]){also}, "
                                f"got {g.dtype}")
            if cnp.PyArray_NDIM(g) != cnp.PyArray_NDIM(p):
                raise ValueError(f"grads[{i}]: shape {(<object>g).shape} does not match params[{i}] shape {(<object>p).shape}")
            for d in range(cnp.PyArray_NDIM(p)):
                if cnp.PyArray_DIM(g, d) != cnp.PyArray_DIM(p, d):
                    raise ValueError(f"grads[{i}]: shape {(<object>g).shape} does not match params[{i}] shape {(<object>p).shape}")
            if (cnp.PyArray_FLAGS(g) & _REQUIRED_FLAGS) != _REQUIRED_FLAGS or cnp.PyArray_ISBYTESWAPPED(g):
                g = kernel_input(g, g.dtype)         # one aligned, native, C-contiguous copy
            elif written.overlaps_array(g):
                raise ValueError(f"grads[{i}] shares memory with a parameter or optimizer state: a gradient "
                                 "must be a separate array")
            self.bound[k] = g
        for k in range(self.n):
            g = self.bound[k]
            self.ts[k].grad = NULL if g is None else cnp.PyArray_DATA(g)
            self.ts[k].grad_format = FO_ARRAY_BF16 if g is not None and cnp.PyArray_TYPE(g) == _BF16 \
                else FO_ARRAY_NATIVE
        self.is_bound = True
        return True

    def check_finite(self):
        """Raises ValueError naming the first bound gradient holding inf or NaN."""
        cdef Py_ssize_t k
        cdef int ok
        cdef cnp.ndarray g
        for k in range(self.n):
            if self.bound[k] is None:
                continue
            g = self.bound[k]
            with nogil:
                if self.ts[k].grad_format == FO_ARRAY_BF16:
                    ok = fo_optim_all_finite_bf16(<const uint16_t *>self.ts[k].grad, self.ts[k].numel, 0)
                elif self.dtype == 0:
                    ok = fo_optim_all_finite_f32(<const float *>self.ts[k].grad, self.ts[k].numel, 0)
                else:
                    ok = fo_optim_all_finite_f64(<const double *>self.ts[k].grad, self.ts[k].numel, 0)
            if not ok:
                raise ValueError(f"grads[{self.index[k]}] contains inf or NaN (check_finite=True); "
                                 "no parameter was updated")

    def run(self, HParams hp not None, int nthreads=0):
        """One fused step of every bound tensor with the checked hyperparameters `hp`, GIL released; consumes the
        binding."""
        cdef int rc
        cdef Py_ssize_t k
        if not self.is_bound:
            raise RuntimeError("StepPlan.run() without a successful bind()")
        if hp.algo != self.algo:
            raise ValueError(f"hyperparameters of algorithm {hp.algo} for a plan of algorithm {self.algo}")
        with nogil:
            rc = fo_optim_step(self.algo, self.dtype, self.ts, self.n, &hp.hp, nthreads)
        self.is_bound = False
        for k in range(self.n):
            self.bound[k] = None
        if rc == FO_ESTATE:
            raise RuntimeError("internal error: optimizer state missing for a tensor (nothing was written)")
        check_rc(rc, "optimizer step")

    def fresh_flags(self):
        """Per tensor, 1 while state slot 0 still holds no history."""
        return [self.ts[k].fresh for k in range(self.n)]

    def coefs(self):
        """Per tensor, the 6 per-step scalars of its last step as float64 bytes (csrc/optim.h fo_tensor.coef;
        LARS's and LAMB's coef[4], coef[5]: the norm sweep's two sums). For the tests' bit-for-bit checks."""
        cdef Py_ssize_t k
        return [np.array([self.ts[k].coef[j] for j in range(6)], np.float64).tobytes() for k in range(self.n)]


def plans_current(object plans, list group_params, int needed):
    """True if `plans` (a list of StepPlan, or None) still match the group's params and have the slots of bitmask
    `needed`: the step can bind them without a rebuild."""
    cdef StepPlan plan
    if plans is None:
        return False
    for plan in <list>plans:
        if not (plan.matches(group_params) and plan.has_slots(needed)):
            return False
    return True


def run_plans(list runs, object optimizer, object fresh):
    """Runs every bound plan of a step, ``runs`` = [(plans, hparams) per group], then sets ``optimizer._fresh``.

    One compiled call with no Python bytecode in between: a KeyboardInterrupt (delivered only between bytecodes)
    lands before the first kernel or after the last, so a step is never applied to only some parameters."""
    cdef StepPlan plan
    for plans, hp in runs:
        for plan in plans:
            plan.run(hp)
    optimizer._fresh = fresh


cdef bint _plain_int64(object a, int64_t n):
    return plain(a, cnp.NPY_INT64, False) and cnp.PyArray_NDIM(<cnp.ndarray>a) == 1 \
        and cnp.PyArray_DIM(<cnp.ndarray>a, 0) == n


cdef bint _sparse_plan_ok(const int64_t *rows, const int64_t *starts, int64_t nu, const int64_t *order, int64_t k,
                          int64_t n_rows) noexcept nogil:
    """rows strictly ascending in [0, n_rows); starts from 0 to k, strictly ascending; order in [0, k)."""
    cdef int64_t j
    if starts[0] != 0 or starts[nu] != k:
        return False
    for j in range(nu):
        if rows[j] < 0 or rows[j] >= n_rows or (j > 0 and rows[j] <= rows[j - 1]) or starts[j + 1] <= starts[j]:
            return False
    for j in range(k):
        if order[j] < 0 or order[j] >= k:
            return False
    return True


def sparse_adam_rows(param, exp_avg, exp_avg_sq, rows, starts, order, grad, int64_t step, double lr,
                     double beta1, double beta2, double eps, bint maximize):
    """SparseAdam's lazy step of the rows ``rows`` of ``param`` (csrc/optim.h fo_sparse_adam_step), GIL released:
    param and both moments writeable, C-contiguous, aligned (n_rows, n_cols) arrays of one float dtype; ``rows``
    (nu,) strictly ascending, ``starts`` (nu + 1,) and ``order`` (k,) plain int64 vectors, ``grad`` a plain
    (k, n_cols) array of the dtype; step >= 1. The caller (fastopt/optim/sparse_adam.py) checks and sorts: anything
    else here is a fastopt bug, a ValueError before anything is written."""
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>param) if cnp.PyArray_Check(param) else -1
    cdef fo_hparams hp
    cdef int rc
    cdef int64_t nu, k, n_cols, n_rows
    cdef bint ok
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError("sparse_adam_rows: param must be a float32 or float64 ndarray")
    for a in (param, exp_avg, exp_avg_sq):
        if not plain(a, typenum, True) or a.shape != param.shape or a.ndim != 2:
            raise ValueError("sparse_adam_rows: param and state must be writeable plain 2-D arrays of one shape")
    n_rows, n_cols = param.shape
    nu = rows.shape[0] if cnp.PyArray_Check(rows) else -1
    k = order.shape[0] if cnp.PyArray_Check(order) else -1
    if not (_plain_int64(rows, nu) and _plain_int64(starts, nu + 1) and _plain_int64(order, k)
            and plain(grad, typenum, False) and grad.shape == (k, n_cols) and step >= 1):
        raise ValueError("sparse_adam_rows: rows, starts, order plain int64 vectors, grad (k, n_cols), step >= 1")
    with nogil:
        ok = _sparse_plan_ok(<const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>rows),
                             <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>starts), nu,
                             <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>order), k, n_rows)
    if not ok:
        raise ValueError("sparse_adam_rows: rows must ascend strictly in range, starts run from 0 to k, order in "
                         "[0, k)")
    memset(&hp, 0, sizeof(hp))
    for name, value in (("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("maximize", maximize)):
        fo_optim_hparam_set(&hp, FIELDS.index(name), value)
    with nogil:
        rc = fo_sparse_adam_step(0 if typenum == cnp.NPY_FLOAT32 else 1, cnp.PyArray_DATA(<cnp.ndarray>param),
                                 cnp.PyArray_DATA(<cnp.ndarray>exp_avg), cnp.PyArray_DATA(<cnp.ndarray>exp_avg_sq),
                                 n_cols, <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>rows),
                                 <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>starts), nu,
                                 <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>order),
                                 cnp.PyArray_DATA(<cnp.ndarray>grad), step, &hp, 0)
    check_rc(rc, "SparseAdam step")


def adafactor_step(param, grad, state, double w, double rho, double eps1, double eps2, double d, double decay,
                   bint maximize):
    """One Adafactor step of one param (csrc/optim.h fo_adafactor_step), GIL released: ``state`` holds
    ``row_var`` (..., rows, 1) and ``col_var`` (..., 1, cols) for 2+ dims, else ``variance`` (param's shape);
    param and state writeable plain arrays of one float dtype, grad a plain one of param's dtype and shape; the
    per-step scalars in double. The caller (fastopt/optim/adafactor.py) checks first: anything else here is a
    fastopt bug, a ValueError before anything is written."""
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>param) if cnp.PyArray_Check(param) else -1
    cdef fo_adafactor a
    cdef int rc
    cdef cnp.ndarray row_mean
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError("adafactor_step: param must be a float32 or float64 ndarray")
    shape = param.shape
    nd = len(shape)
    factored = nd >= 2
    names = ("row_var", "col_var") if factored else ("variance",)
    shapes = (shape[:nd - 1] + (1,), shape[:nd - 2] + (1, shape[nd - 1])) if factored else (shape,)
    arrays = [state.get(name) for name in names]
    if not plain(param, typenum, True) or not plain(grad, typenum, False) or grad.shape != shape or any(
            not plain(x, typenum, True) or x.shape != s for x, s in zip(arrays, shapes)):
        raise ValueError("adafactor_step: param, grad and state must be plain arrays of one dtype and the "
                         "expected shapes")
    memset(&a, 0, sizeof(a))
    a.param = cnp.PyArray_DATA(<cnp.ndarray>param)
    a.grad = cnp.PyArray_DATA(<cnp.ndarray>grad)
    a.factored = factored
    if factored:
        a.rows, a.cols = shape[nd - 2], shape[nd - 1]
        a.batch = cnp.PyArray_SIZE(<cnp.ndarray>param) // (a.rows * a.cols) if a.rows * a.cols else 0
        a.row_var = cnp.PyArray_DATA(<cnp.ndarray>arrays[0])
        a.col_var = cnp.PyArray_DATA(<cnp.ndarray>arrays[1])
    else:
        a.batch, a.rows, a.cols = 1, 1, cnp.PyArray_SIZE(<cnp.ndarray>param)
        a.variance = cnp.PyArray_DATA(<cnp.ndarray>arrays[0])
    row_mean = np.empty(max(a.batch, 1), dtype=param.dtype)
    a.row_mean = cnp.PyArray_DATA(row_mean)
    a.maximize = maximize
    a.w, a.rho, a.eps1, a.eps2, a.d, a.decay = w, rho, eps1, eps2, d, decay
    with nogil:
        rc = fo_adafactor_step(0 if typenum == cnp.NPY_FLOAT32 else 1, &a, 0)
    check_rc(rc, "Adafactor step")
