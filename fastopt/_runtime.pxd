# Declarations of csrc/runtime.h and the return codes of csrc/fo_common.h, shared by every kernel module.
from libc.stdint cimport int64_t

cdef extern from "runtime.h" nogil:
    int FO_OK, FO_EINVAL, FO_ENOMEM, FO_ESTATE
    int FO_PARALLEL_MIN_ELEMENTS, FO_RUNTIME_ABI
    int FO_ISA_BASELINE, FO_ISA_AVX2, FO_ISA_AVX512, FO_ISA_COUNT
    ctypedef struct fo_runtime:
        int abi
        int isa
        int64_t parallel_min
        int teams_started
        int fork_serial
        unsigned fork_generation
    fo_runtime *fo_rt
    int fo_isa_active()
    int64_t fo_parallel_min()
    int fo_max_threads()
    int fo_threads_for(int64_t work, int requested)
