"""The signals that stop a bdinn command or video job as Ctrl-C does, and what a command says as it
stops. Apart from the command-line code, so that the video library can watch them without it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

# SIGTERM (timeout, docker stop, a batch scheduler) and SIGHUP (the terminal or SSH session went away).
STOPPING = {signal.SIGTERM: "Terminated."}
if hasattr(signal, "SIGHUP"):  # not on Windows
    STOPPING[signal.SIGHUP] = "Hangup."
STOP_SIGNALS = (signal.SIGINT, *STOPPING)  # Python raises KeyboardInterrupt for the first


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Ctrl-C, SIGTERM or SIGHUP during the block acts when the block ends: a half-applied
    optimiser step, or weights written without their sidecar, could not be resumed, and one
    raised inside a callback from C++ (TensorRT's logger or plugin while it builds) is caught
    there and lost. Yields the signals caught so far, for work that can stop early on its own.
    The main thread only (where Python runs signal handlers); elsewhere the block runs as it is.
    Signals ignored when the block starts stay ignored."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {  # a signal ignored (SIGHUP under nohup) stays ignored: it must not stop the block's work
        sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
        for sig in STOP_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)  # Python's KeyboardInterrupt, or stops_cleanly's SystemExit
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])
