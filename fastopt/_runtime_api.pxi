# Included by every kernel module but fastopt._runtime: points this extension's fo_rt at the one runtime state,
# which fastopt._runtime (the only extension compiled with csrc/runtime.c) exports in a capsule.
from cpython.pycapsule cimport PyCapsule_GetPointer

from fastopt import _runtime as _fo_runtime_module

fo_rt = <fo_runtime *>PyCapsule_GetPointer(_fo_runtime_module._C_API, b"fastopt._runtime._C_API")
if fo_rt.abi != FO_RUNTIME_ABI:
    raise ImportError(f"fastopt._runtime has runtime ABI {fo_rt.abi}, this module expects {FO_RUNTIME_ABI}: "
                      "rebuild fastopt")
