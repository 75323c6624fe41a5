# The functional optimizer steps' one call (included by _optim.pyx): arrays and hyperparameters checked at C speed,
# one fo_tensor filled on the stack, one GIL-free call. Arrays failing a fast check go to the Python checks of
# fastopt._validation, which raise the error naming the argument.

DEF _MAX_STEP = 9007199254740992     # 2**53: a step count a double holds exactly


cdef int _check_inplace(object a, str name, int typenum, object param) except -1:
    """a: a writeable dense array of the param's dtype and shape (state updated in place)."""
    if plain(a, typenum, True) and _same_shape(<cnp.ndarray>a, <cnp.ndarray>param):
        return 0
    _v.check_inplace_array(a, name)
    _v.check_same_dtype(param, a, "param", name)
    _v.check_same_shape(param, a, "param", name)
    return 0


cdef bint _same_shape(cnp.ndarray a, cnp.ndarray b):
    cdef int d
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, d) != cnp.PyArray_DIM(b, d):
            return False
    return True


cdef int64_t _step_index(object step) except -1:
    """The 1-based index of this update, as an int in [1, 2**53]."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"Invalid step: expected an integer >= 1 (the index of this update), got "
                        f"{type(step).__name__} {step!r}")
    if not 1 <= step <= _MAX_STEP:
        raise ValueError(f"Invalid step: expected an integer in [1, 2**53] (the index of this update), got {step!r}")
    return <int64_t>step


cdef class FunctionalStep:
    """One in-place step of one param with caller-owned state: ``self(param, grad, states, aux, step, values,
    fresh)``. states: a tuple of arrays (or None where the step does not use them) in slot order, named by
    ``names`` in errors; aux: the scalar state (named ``aux_name``) or None; step: the 1-based update index, or None
    where the algorithm does not use it; values: the hyperparameters in `layout` order; fresh: slot 0 holds no
    history (SGD's first step)."""
    cdef HyperLayout layout
    cdef tuple names
    cdef str aux_name
    cdef Py_ssize_t aux_size     # 0: aux is 0-d; n: aux holds n float64 values

    def __cinit__(self, HyperLayout layout not None, tuple names, str aux_name=None, Py_ssize_t aux_size=0):
        self.layout = layout
        self.names = names
        self.aux_name = aux_name
        self.aux_size = aux_size

    def __call__(self, param, grad, tuple states, aux, step, tuple values, bint fresh):
        cdef HParams h = self.layout.pack(values)
        cdef int req = fo_optim_required_slots(h.algo, &h.hp), typenum, s, rc
        cdef fo_tensor t
        cdef int64_t counter = 0 if step is None else _step_index(step) - 1
        cdef list written
        cdef object g = grad, a
        if not plain(param, cnp.NPY_FLOAT32, True) and not plain(param, cnp.NPY_FLOAT64, True):
            _v.check_inplace_array(param, "param")
        typenum = cnp.PyArray_TYPE(<cnp.ndarray>param)
        if not cnp.PyArray_Check(grad) or cnp.PyArray_TYPE(<cnp.ndarray>grad) != typenum \
                or not _same_shape(<cnp.ndarray>grad, <cnp.ndarray>param):
            _v.check_float_array(grad, "grad")
            _v.check_same_dtype(param, grad, "param", "grad")
            _v.check_same_shape(param, grad, "param", "grad")
        memset(&t, 0, sizeof(fo_tensor))
        written = [param]
        for s in range(len(states)):
            if not (req >> s) & 1:
                continue
            a = states[s]
            if a is None:
                raise ValueError(f"{self.names[s]}: required, got None")
            _check_inplace(a, self.names[s], typenum, param)
            t.state[s] = cnp.PyArray_DATA(<cnp.ndarray>a)
            written.append(a)
        _check_disjoint(g, written, self.names, req)
        if not plain(g, typenum, False):
            g = kernel_input(g, (<cnp.ndarray>param).dtype)
        if req & FO_NEEDS_AUX:
            if self.aux_size == 0 and not (plain(aux, cnp.NPY_FLOAT64, True)
                                           and cnp.PyArray_NDIM(<cnp.ndarray>aux) == 0):
                raise TypeError(f"{self.aux_name}: expected a writeable 0-d float64 numpy array (the scalar state "
                                "the step updates in place)")
            if self.aux_size > 0 and not (plain(aux, cnp.NPY_FLOAT64, True)
                                          and cnp.PyArray_NDIM(<cnp.ndarray>aux) == 1
                                          and cnp.PyArray_SIZE(<cnp.ndarray>aux) == self.aux_size):
                raise TypeError(f"{self.aux_name}: expected a writeable float64 numpy array of shape "
                                f"({self.aux_size},) (the scalar state the step updates in place)")
            t.aux = <double *>cnp.PyArray_DATA(<cnp.ndarray>aux)
        t.param = cnp.PyArray_DATA(<cnp.ndarray>param)
        t.grad = cnp.PyArray_DATA(<cnp.ndarray>g)
        t.numel = cnp.PyArray_SIZE(<cnp.ndarray>param)
        t.ndim = cnp.PyArray_NDIM(<cnp.ndarray>param)
        t.step = &counter
        t.fresh = fresh
        with nogil:
            rc = fo_optim_step(h.algo, 0 if typenum == cnp.NPY_FLOAT32 else 1, &t, 1, &h.hp, 0)
        check_rc(rc, "optimizer kernel")
        return param


cdef int _check_disjoint(object grad, list written, tuple names, int req) except -1:
    """ValueError naming the first pair of [param, grad, used states...] that share memory."""
    cdef list arrays = [written[0], grad] + written[1:]
    cdef list labels = ["param", "grad"] + [names[s] for s in range(len(names)) if (req >> s) & 1]
    cdef Py_ssize_t i, j
    cdef bint dense = plain(grad, cnp.PyArray_TYPE(<cnp.ndarray>grad), False)
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            if (overlap(arrays[i], arrays[j]) if dense or (i != 1 and j != 1)
                    else np.shares_memory(arrays[i], arrays[j])):
                raise ValueError(f"{labels[i]} and {labels[j]} share memory; they must be separate arrays")
    return 0
