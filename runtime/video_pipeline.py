"""The decode, process and encode threads of a video job: bounded queues between them, one stop
flag and the first error, so that any thread's failure or a signal stops all three."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

QUEUE_SIZE = 4  # frames waiting on each side of `process`; 1080p RGB48 is 12 MB a frame
_POLL = 0.05  # seconds between checks for a stop request while a queue is full or empty
# Seconds the threads get to stop after Ctrl-C or SIGTERM where a pipe can stall (standard output,
# a source that is not a file). One blocked inside FFmpeg on a stalled pipe never does: it is left
# behind (a daemon thread) with the containers it uses, which are then not closed under it.
_SIGNAL_GRACE = 1.0


class Cancelled(Exception):
    """Raised in a thread waiting on a queue when another thread has failed."""


class Pipeline:
    """Stop flag and first error shared by the decode, inference and encode threads."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()  # the standard-input reader's own, when it is the source
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue, item: object) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return
            except queue.Full:
                pass
        raise Cancelled

    def get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                pass
        raise Cancelled

    def thread(self, target: Callable[[], None], name: str) -> tuple[threading.Thread, threading.Event]:
        """A daemon thread running `target`, and an event set once it has ended. Waited for by the
        event: a Ctrl-C inside Thread.join() leaves is_alive() False while the thread still runs
        (CPython's handling of an interrupted join)."""
        ended = threading.Event()

        def run() -> None:
            try:
                target()
            except Cancelled:
                pass
            except BaseException as exc:
                self.fail(exc)
            finally:
                ended.set()

        return threading.Thread(target=run, name=name, daemon=True), ended

    def wait_for(self, threads: list[tuple[threading.Thread, threading.Event]], may_stall: bool) -> bool:
        """Wait until every thread has ended; True where one was left behind instead. Only a pipe
        can block a thread for good, so a thread is given up on only where `may_stall` and a
        signal asked to stop, after _SIGNAL_GRACE. Ctrl-C while waiting stops the threads and
        the wait goes on."""
        signalled = isinstance(self.error, (KeyboardInterrupt, SystemExit))
        given_up = None  # when to stop waiting, once a signal asked to stop
        for _, ended in threads:
            while True:
                try:
                    if ended.is_set():
                        break
                    if signalled and may_stall:
                        given_up = given_up or time.monotonic() + _SIGNAL_GRACE
                        if time.monotonic() > given_up:
                            return True
                    ended.wait(_POLL)
                except BaseException as exc:  # Ctrl-C while waiting: stop, and still wait
                    signalled |= isinstance(exc, (KeyboardInterrupt, SystemExit))
                    self.fail(exc)
        return False


END = object()  # the last item through the queues
