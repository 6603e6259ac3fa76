"""Lines and progress bars on stderr that the work does not depend on: a write that fails
(2>/dev/full, 2>&1 | head, a terminal that hung up) loses the line, never the run's output."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from tqdm import tqdm


def tell(text: str) -> None:
    """A status, warning or error line on stderr, above any progress bar; none without a stderr
    (pythonw, some daemons), where tqdm would write it into stdout, which may hold a video."""
    if sys.stderr is None:
        return
    with contextlib.suppress(OSError):
        tqdm.write(text, file=sys.stderr)


class LossyBar:
    """A tqdm bar on stderr that stops drawing where a write fails: tqdm itself lets only a hung-up
    terminal's EIO pass, so a full disk or a closed pipe under `2>` stopped the work it drew. It
    draws on stderr itself (not a wrapper of it), as tqdm clears only the bars drawn on the very
    stream a line is written to."""

    def __init__(self, **options: Any) -> None:
        try:
            self._bar = tqdm(file=sys.stderr, **options)
        except OSError:  # its first flush of stderr
            self._bar = tqdm(disable=True)

    def update(self, n: int = 1) -> None:
        try:
            self._bar.update(n)
        except OSError:
            self._bar.disable = True  # no more drawing, nor clearing at close

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._bar.close()
