# Declarations of csrc/runtime.h, shared by every kernel module.
from libc.stdint cimport int64_t

cdef extern from "runtime.h" nogil:
    int FO_PARALLEL_MIN_ELEMENTS
    int FO_ISA_BASELINE, FO_ISA_AVX2, FO_ISA_AVX512, FO_ISA_COUNT
    int fo_isa_compiled(int isa)
    int fo_isa_supported(int isa)
    int fo_isa_best()
    int fo_isa_active()
    int fo_isa_set(int isa)
    const char *fo_isa_name(int isa)
    int fo_openmp_enabled()
    int fo_max_threads()
    void fo_set_max_threads(int n)
    int fo_threads_for(int64_t work, int requested)
    int64_t fo_parallel_min()
    void fo_set_parallel_min(int64_t n)
