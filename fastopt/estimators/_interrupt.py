"""Ctrl-C during a fit stops it at the next step boundary, with a consistent model (issue 15).

A KeyboardInterrupt raised wherever the interpreter happens to be would leave a fit between the optimizer step and
the lr schedule's step, or between them and the sample counter: weights from one step, schedule and dropout seeds
from another. During a fit on the main thread, SIGINT only sets a flag; the loop reads it after each complete step
(forward, backward, optimizer step, schedule step, counters), stops there and returns the fitted model with a
warning, as scikit-learn's MLP does. A second Ctrl-C before the loop gets there raises at once, as usual.
Off the main thread SIGINT never reaches the fit (Python delivers signals to the main thread), so nothing changes.
"""
import contextlib
import signal
import threading


class _Request:
    def __init__(self):
        self.stop = False


@contextlib.contextmanager
def deferred_interrupt():
    """Yields a request whose ``stop`` becomes True at the first SIGINT; the handler is restored on exit."""
    request = _Request()
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield request                 # a user's own SIGINT handler, or a thread: left alone
        return

    def handler(signum, frame):
        if request.stop:
            raise KeyboardInterrupt
        request.stop = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
