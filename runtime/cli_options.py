"""Option parsing shared by the command-line tools."""

from __future__ import annotations

import functools
import math
import signal
from collections.abc import Callable
from types import FrameType
from typing import ParamSpec, TypeVar

import click

from .debander import DEFAULT_MAX_CHANGE

P = ParamSpec("P")
R = TypeVar("R")


def stops_cleanly_on_sigterm(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command with SIGTERM (timeout, docker stop, a batch scheduler) raising SystemExit,
    so that it cleans up as for Ctrl-C: temporary outputs removed, worker threads joined."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            return command(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # the shell's convention for "killed by signal N"


def parse_size(ctx: click.Context | None, param: click.Parameter | None, value: str) -> tuple[int, int]:
    """click callback: "HEIGHTxWIDTH" -> (height, width)."""
    try:
        height, width = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH, e.g. 1080x1920") from None
    return height, width


def parse_optional_size(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> tuple[int, int] | None:
    """click callback for a size option without a default: None stays None."""
    return None if value is None else parse_size(ctx, param, value)


def parse_max_change(ctx: click.Context | None, param: click.Parameter | None, value: str) -> float | None:
    """click callback: "off" -> None, else a positive number of 8-bit levels."""
    if value.strip().lower() == "off":
        return None
    try:
        levels = float(value)
    except ValueError:
        levels = math.nan
    if not 0 < levels < math.inf:
        raise click.BadParameter(f"{value!r} is neither a positive number of 8-bit levels nor 'off'")
    return levels


# The same --max-change for every command that runs a model (bdinn-run, bdinn-eval, benchmarks).
max_change_option = click.option(
    "--max-change",
    default=f"{DEFAULT_MAX_CHANGE:g}",
    callback=parse_max_change,
    metavar="LEVELS|off",
    show_default=True,
    help="The most the model may move any value, in 8-bit levels; 'off' for the model's raw output "
    "(heavy posterisation such as 4-bit pictures wants more).",
)
