# The runtime functions every kernel module exports (included by each _*.pyx, whose C runtime state is its own).

def _isa_active():
    """Name of the instruction-set path this module's kernels use."""
    return fo_isa_name(fo_isa_active()).decode()


def _isa_set(name):
    """Selects the instruction-set path of this module's kernels by name; ValueError if this CPU lacks it."""
    cdef int isa
    for isa in range(FO_ISA_COUNT):
        if fo_isa_name(isa).decode() == name:
            if fo_isa_set(isa) != 0:
                raise ValueError(f"instruction set {name!r} is not supported on this CPU or build")
            return
    raise ValueError(f"unknown instruction set {name!r}")


def _isa_table():
    """{name: (compiled, supported)} for every instruction-set path."""
    cdef int isa
    return {fo_isa_name(isa).decode(): (bool(fo_isa_compiled(isa)), bool(fo_isa_supported(isa)))
            for isa in range(FO_ISA_COUNT)}


def _openmp_enabled():
    return bool(fo_openmp_enabled())


def _max_threads():
    return fo_max_threads()


def _set_max_threads(int n):
    fo_set_max_threads(n)


def _parallel_min_elements():
    return fo_parallel_min()


def _set_parallel_min_elements(int64_t n):
    fo_set_parallel_min(n)
