# Included by every kernel module but fastopt._runtime: points this extension's fo_rt at the one runtime state,
# which fastopt._runtime (the only extension compiled with csrc/runtime.c) exports in a capsule.
from cpython.pycapsule cimport PyCapsule_GetPointer

from fastopt import _runtime as _fo_runtime_module

fo_rt = <fo_runtime *>PyCapsule_GetPointer(_fo_runtime_module._C_API, b"fastopt._runtime._C_API")


cdef int check_rc(int rc, str what) except -1:
    """Turns a kernel's return code (csrc/fo_common.h) into the exception it stands for. The public functions check
    every argument first, so anything but FO_OK and FO_ENOMEM is a fastopt bug, never a user's error."""
    if rc == FO_OK:
        return 0
    if rc == FO_ENOMEM:
        raise MemoryError(f"{what}: could not allocate scratch memory")
    raise RuntimeError(f"internal error: {what} rejected its arguments (code {rc}); nothing was written")


if fo_rt.abi != FO_RUNTIME_ABI:
    raise ImportError(f"fastopt._runtime has runtime ABI {fo_rt.abi}, this module expects {FO_RUNTIME_ABI}: "
                      "rebuild fastopt")
