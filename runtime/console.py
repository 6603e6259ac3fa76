"""Lines and progress bars on stderr that the work does not depend on: a write that fails
(2>/dev/full, 2>&1 | head, a terminal that hung up) loses the line, never the run's output."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, TextIO

from tqdm import tqdm


def tell(text: str) -> None:
    """A status, warning or error line on stderr, above any progress bar; none without a stderr
    (pythonw, some daemons), where tqdm would write it into stdout, which may hold a video."""
    if sys.stderr is None:
        return
    with contextlib.suppress(OSError):
        tqdm.write(text, file=sys.stderr)


class LossyStream:
    """A progress bar's stream whose writes may fail: tqdm itself lets only a hung-up terminal's
    EIO pass, so a full disk or a closed pipe under `2>` stopped the work it was drawing."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __eq__(self, other: object) -> bool:  # tqdm.write clears the bars drawn on the stream it writes to
        return other is self or self._stream == getattr(other, "_stream", other)

    def __hash__(self) -> int:
        return hash(self._stream)

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno: what tqdm asks of a stream
        return getattr(self._stream, name)
