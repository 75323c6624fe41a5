# Hyperparameters of the optimizer family checked at C speed (included by _optim.pyx).
#
# A ``HyperLayout`` is compiled from an optimizer spec (fastopt/optim/_spec.py): for each value, in the spec's order,
# its check and the fo_hparams field it fills. ``pack(values)`` checks a tuple of values and returns the filled
# ``HParams``. Plain floats and bools are checked here; anything else (ints, NumPy scalars, bad values) goes to the
# Python checks of fastopt._validation, which raise the error naming the argument or return the float.

from libc.math cimport INFINITY

from fastopt import _validation as _v

# Checks of one value (the spec's Hyper.check): >= 0 and finite; finite; in [0, 1]; in [0, 1); a pair of values
# in [0, 1) filling two fields; a bool; a pair of finite values filling two fields; a triple of values in [0, 1)
# filling three fields; None (filled as 0: off) or a finite value > 0.
cdef enum:
    _NONNEG, _FINITE, _UNIT, _BETA, _BETAS, _FLAG, _PAIR, _BETAS3, _OPTPOS
NONNEG, FINITE, UNIT, BETA, BETAS, FLAG, PAIR, BETAS3, OPTPOS = (_NONNEG, _FINITE, _UNIT, _BETA, _BETAS, _FLAG,
                                                                _PAIR, _BETAS3, _OPTPOS)
# fo_hparams fields, by name, in csrc/optim.h's order (FO_HPARAM_FIELDS: the one list).
FIELDS = tuple(fo_optim_hparam_name(f).decode() for f in range(FO_HPARAM_COUNT))
_FLAGS = frozenset(f for f in range(FO_HPARAM_COUNT) if fo_optim_hparam_is_flag(f))
DEF _MAXH = 16


cdef inline void _set_field(fo_hparams *hp, int f, double v) noexcept nogil:
    fo_optim_hparam_set(hp, f, v)


cdef inline bint _in_range(int kind, double d) noexcept nogil:
    if kind == _NONNEG:
        return d >= 0.0 and d < INFINITY
    if kind == _FINITE:
        return -1e300 <= d <= 1e300
    if kind == _UNIT:
        return 0.0 <= d <= 1.0
    if kind == _OPTPOS:
        return 0.0 < d <= 1e300
    return 0.0 <= d < 1.0


cdef bint _fast_tuple(object v, Py_ssize_t n, int kind):
    """v is a tuple of n floats, each passing the check `kind`."""
    cdef Py_ssize_t i
    if type(v) is not tuple or len(<tuple>v) != n:
        return False
    for i in range(n):
        if type((<tuple>v)[i]) is not float or not _in_range(kind, <double>(<tuple>v)[i]):
            return False
    return True


cdef int _fill_tuple(fo_hparams *hp, int field, int kind, object v, str what) except -1:
    """A BETAS, BETAS3 or PAIR value checked, filling `field` and the next one or two."""
    cdef Py_ssize_t i, n = 3 if kind == _BETAS3 else 2
    if not _fast_tuple(v, n, _FINITE if kind == _PAIR else _BETA):
        v = _v.check_pair(v, what) if kind == _PAIR else _v.check_betas(v, n)
    for i in range(n):
        _set_field(hp, field + i, <double>v[i])
    return 0


cdef double _slow_check(int kind, object v, str what) except? -1.0:
    """The Python check of one value: raises naming `what`, or returns it as a float."""
    if kind == _NONNEG:
        return _v.check_nonnegative(v, what)
    if kind == _FINITE:
        return _v.check_range(v, what, -1e300, 1e300)
    if kind == _UNIT:
        return _v.check_range(v, what, 0.0, 1.0)
    if kind == _BETA:
        return _v.check_range(v, what, 0.0, 1.0, high_open=True)
    if kind == _OPTPOS:
        return _v.check_range(v, what, 0.0, 1e300, low_open=True)
    return 1.0 if _v.check_flag(v, what) else 0.0


cdef double _check_value(int kind, object v, str what) except? -1.0:
    cdef double d
    if kind == _FLAG:
        if v is True:
            return 1.0
        if v is False:
            return 0.0
    elif kind == _OPTPOS and v is None:
        return 0.0
    elif type(v) is float:
        d = <double>v
        if _in_range(kind, d):
            return d
    return _slow_check(kind, v, what)


cdef class HParams:
    """Checked hyperparameters of one step, as the kernel reads them (fo_hparams), and their algorithm."""
    cdef fo_hparams hp
    cdef readonly int algo
    cdef readonly int slots          # required_slots(), computed once at pack

    def required_slots(self):
        """Bitmask of the state the step uses: bit s = slot s, bit 3 = the scalar state (OptimizerSpec.aux)."""
        return fo_optim_required_slots(self.algo, &self.hp)

    def as_dict(self):
        """{field: value} of every fo_hparams field (flags as bools)."""
        return {name: bool(fo_optim_hparam_get(&self.hp, f)) if f in _FLAGS else fo_optim_hparam_get(&self.hp, f)
                for f, name in enumerate(FIELDS)}


cdef inline bint _immutable_scalar(object v):
    cdef type t = type(v)
    return t is float or t is int or t is bool or v is None


cdef bint _same_immutables(tuple values, tuple last):
    """Every value is the very object of `last` at its position, and immutable all the way down."""
    cdef Py_ssize_t k, j
    cdef object v
    if len(values) != len(last):
        return False
    for k in range(len(values)):
        v = values[k]
        if v is not last[k]:
            return False
        if type(v) is tuple:
            for j in range(len(<tuple>v)):
                if not _immutable_scalar((<tuple>v)[j]):
                    return False
        elif not _immutable_scalar(v):
            return False
    return True


cdef class HyperLayout:
    """How a tuple of hyperparameter values fills fo_hparams for algorithm `algo`.

    entries: (check, field name or None, what) per value, in tuple order; a BETAS value is a pair filling
    ``field`` and the next field. fixed: {field name: value} set before the values (AdamW's decoupling).
    cross_check: None or a function of the filled HParams, raising on an invalid combination (SGD's Nesterov rule).
    """
    cdef readonly int algo
    cdef int n
    cdef int kind[_MAXH]
    cdef int field[_MAXH]
    cdef tuple whats
    cdef fo_hparams fixed
    cdef readonly object cross_check
    cdef tuple _last                     # (values, HParams) of the last accepted pack

    def __cinit__(self, int algo, list entries, dict fixed, object cross_check=None):
        cdef Py_ssize_t k
        if algo < 0 or algo >= FO_ALGO_COUNT:
            raise ValueError(f"unknown optimizer algorithm {algo}")
        if len(entries) > _MAXH:
            raise ValueError(f"at most {_MAXH} hyperparameters")
        self.algo = algo
        self.n = len(entries)
        self.whats = tuple(what for _, _, what in entries)
        for k, (kind, field, _) in enumerate(entries):
            self.kind[k] = kind
            self.field[k] = -1 if field is None else FIELDS.index(field)
        memset(&self.fixed, 0, sizeof(fo_hparams))
        for name, value in fixed.items():
            _set_field(&self.fixed, FIELDS.index(name), float(value))
        self.cross_check = cross_check

    cdef int fill(self, fo_hparams *hp, tuple values) except -1:
        """Checks `values` (one per entry) and fills hp; raises before filling anything visible to C."""
        cdef Py_ssize_t k
        cdef int kind
        cdef object v
        cdef str what
        if len(values) != self.n:
            raise TypeError(f"expected {self.n} hyperparameter values, got {len(values)}")
        hp[0] = self.fixed
        for k in range(self.n):
            kind, v, what = self.kind[k], values[k], self.whats[k]
            if kind == _BETAS or kind == _PAIR or kind == _BETAS3:
                _fill_tuple(hp, self.field[k], kind, v, what)
            elif self.field[k] >= 0:
                _set_field(hp, self.field[k], _check_value(kind, v, what))
            else:
                _check_value(kind, v, what)
        return 0

    cpdef HParams pack(self, tuple values):
        """The checked HParams of `values` (TypeError/ValueError naming the bad one).

        The last accepted values and their HParams are kept: values that are the very same immutable objects
        (float, int, bool, None, tuples of them; compared by identity, never by equality, so ``lr=True`` after
        ``lr=1.0`` is checked again) give the same result without a second check."""
        cdef HParams out
        cdef tuple last = self._last
        if last is not None and _same_immutables(values, <tuple>last[0]):
            return <HParams>last[1]
        out = HParams.__new__(HParams)
        out.algo = self.algo
        self.fill(&out.hp, values)
        if self.cross_check is not None:
            self.cross_check(out)
        out.slots = fo_optim_required_slots(self.algo, &out.hp)
        self._last = (values, out)       # one assignment: other threads see the old pair or the new one
        return out
