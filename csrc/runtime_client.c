/* The runtime pointer of an extension that does not own the runtime: set at import from the capsule of
 * fastopt._runtime (fastopt/_runtime_api.pxi), before any kernel can run. */
#include "runtime.h"

fo_runtime *fo_rt = 0;
