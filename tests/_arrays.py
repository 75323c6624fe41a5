"""Array helpers shared by the tests' error tables, which are built at import time (where fixtures cannot reach)."""


def readonly(a):
    """A read-only copy of ``a``."""
    a = a.copy()
    a.flags.writeable = False
    return a
