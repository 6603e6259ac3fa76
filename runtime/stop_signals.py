"""The signals that stop a bdinn command or video job as Ctrl-C does, and what a command says as it
stops. Apart from the command-line code, so that the video library can watch them without it."""

from __future__ import annotations

import signal

# SIGTERM (timeout, docker stop, a batch scheduler) and SIGHUP (the terminal or SSH session went away).
STOPPING = {signal.SIGTERM: "Terminated."}
if hasattr(signal, "SIGHUP"):  # not on Windows
    STOPPING[signal.SIGHUP] = "Hangup."
STOP_SIGNALS = (signal.SIGINT, *STOPPING)  # Python raises KeyboardInterrupt for the first
