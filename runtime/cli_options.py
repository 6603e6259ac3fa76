"""What the command-line tools share: their command class and option parsing, how they stop on
a signal (`stops_cleanly`) and how warnings are shown (one line each)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import click
from tqdm import tqdm

from .console import tell
from .debander import DEFAULT_MAX_CHANGE
from .stop_signals import STOPPING

P = ParamSpec("P")
R = TypeVar("R")
_CONTROL = {code: repr(chr(code))[1:-1] for code in (*range(32), 127)}  # "\n" -> "\\n", ESC -> "\\x1b"


def one_line(text: str) -> str:
    """`text` with its control characters written as escapes: a file name holding a newline (or a
    terminal escape sequence) would otherwise forge lines of output that a pipeline parses."""
    return text.translate(_CONTROL)


def os_error_message(exc: OSError) -> str | None:
    """'NAME: File name too long': what the file system said of the file it refused; None for an
    OSError about no file (a bug's, to be seen whole)."""
    if exc.filename is None or exc.strerror is None:
        return None
    return f"{os.fsdecode(exc.filename)}: {exc.strerror}"


class BdinnCommand(click.Command):
    """A bdinn command: -h and --help, defaults shown in the help, and every error one line on
    stderr, "bdinn-run: error: ...", with click's exit code (2 for usage mistakes).

    click prints usage mistakes (a bad --tile, an unknown option) as three lines, the usage
    string, a help hint and the error, and its other errors as "Error: ...", which does not
    say which program of a pipeline failed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"], "show_default": True})
        super().__init__(*args, **kwargs)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            raise self._one_line(exc) from None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            raise self._one_line(exc) from None
        except OSError as exc:  # the file system refused a named file (a name too long, gone, a loop)
            if (said := os_error_message(exc)) is None:
                raise
            raise self._one_line(click.ClickException(said)) from None

    def _one_line(self, exc: click.ClickException) -> click.ClickException:
        if isinstance(exc, _CommandError):
            return exc
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and "Did you mean" not in message:  # else click named the fix
            message = f"{message.rstrip('.')} (see {self.name} --help)"
        return _CommandError(one_line(f"{self.name}: error: {message}"), exc.exit_code)


class _CommandError(click.ClickException):
    """An error already worded in full: shown as it is, with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(self.message, file=file, err=file is None)


def stops_cleanly(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command with SIGTERM and SIGHUP raising SystemExit, so that it cleans up as for
    Ctrl-C: temporary outputs removed, worker threads joined. Each exits with the shell's status
    for the signal (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP). A signal ignored when the
    command starts (SIGHUP under nohup) stays ignored. A command started with stderr closed writes
    its messages to /dev/null rather than failing."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if sys.stderr is None:  # started with 2>&-: progress bars would fail, tqdm.write would use stdout
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open for the process's life)
        previous = {
            sig: signal.signal(sig, _exit_on_signal)
            for sig in STOPPING
            if signal.getsignal(sig) is not signal.SIG_IGN
        }
        hook = sys.unraisablehook
        sys.unraisablehook = functools.partial(_redeliver_if_dropped, hook)
        try:
            result = command(*args, **kwargs)
            if _dropped:  # it returned before the signal came again: it was stopped all the same
                raise SystemExit(128 + _dropped[0])
            return result
        except KeyboardInterrupt:
            tell("Aborted!")
            raise SystemExit(128 + signal.SIGINT) from None
        except RuntimeError as exc:  # Path.resolve() on Python 3.10-3.12, wherever a path is compared
            if not str(exc).startswith("Symlink loop from "):
                raise
            looped = str(exc).removeprefix("Symlink loop from ").strip("'")
            raise click.ClickException(
                f"{looped}: a loop of symbolic links (one points back to another); remove it or give "
                "another path"
            ) from None
        except SystemExit as exc:
            if isinstance(exc.code, int) and exc.code - 128 in STOPPING:  # a log shows why the run ended
                tell(STOPPING[signal.Signals(exc.code - 128)])
            raise
        finally:
            _dropped.clear()
            sys.unraisablehook = hook
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show library warnings (a pair skipped, audio dropped) as one 'Warning: ...' line each on
    stderr, above any progress bar, instead of Python's file:line and source text. Use it as a
    decorator, `@one_line_warnings()`, or a with-block."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


@contextlib.contextmanager
def counting_seconds(what: str) -> Iterator[None]:
    """On a terminal, a line that counts the seconds of a long step whose progress cannot be
    measured (an ONNX export, an engine build: a minute or more of silence otherwise); in a log,
    nothing."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    with tqdm(desc=what, bar_format="{desc}: {elapsed}", leave=False, file=sys.stderr) as line:
        ticker = threading.Thread(target=_tick, args=(line, done), daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _tick(line: tqdm, done: threading.Event) -> None:
    while not done.wait(0.5):
        line.refresh()


def _show_warning(message: Warning | str, *args: object) -> None:
    tell(one_line(f"Warning: {message}"))


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # the shell's convention for "killed by signal N"


_dropped: list[int] = []  # signals whose SystemExit a finaliser dropped, while a command runs


def _redeliver_if_dropped(otherwise: Callable[[Any], object], unraisable: Any) -> None:
    """sys.unraisablehook while a command runs. Python prints and drops an exception raised inside
    a finaliser (a weakref callback, as torch.export's): a signal's SystemExit landing there was
    lost, and the command ran on to its end (compare_backends.py timed every backend). The signal
    is sent again from another thread once the finaliser has returned (raised here, its handler
    would run inside this hook, and be dropped again)."""
    exc = unraisable.exc_value
    if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code - 128 in STOPPING:
        _dropped.append(exc.code - 128)
        threading.Thread(target=_signal_again, args=(exc.code - 128,), daemon=True).start()
    else:
        otherwise(unraisable)  # the hook there was: Python's, or a test runner's


def _signal_again(signum: int) -> None:
    time.sleep(0.01)  # the finaliser has returned by now
    if _dropped:  # still in the command, which has not unwound
        os.kill(os.getpid(), signum)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange without nan and inf: every comparison with nan is false, so FloatRange
    let it through to fail (or train on it) after minutes of work."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def out_of_memory(exc: MemoryError, advice: str) -> click.ClickException:
    """The one line for a model that ran out of memory: what the allocator said, and what needs less."""
    return click.ClickException(f"not enough memory ({str(exc) or 'the allocator failed'}); {advice}")


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
    help="The most the model may move any value, in 8-bit levels (black and white samples of an "
    "8-bit-precision picture: none); 'off' for the model's raw output (heavy posterisation such as "
    "4-bit pictures wants more).",
)


def parse_tile(ctx: click.Context | None, param: click.Parameter | None, value: int | None) -> int | None:
    """click callback: a tile side is a multiple of 8 (the network's padding unit), at least 32."""
    if value is not None and (value < 32 or value % 8):
        raise click.BadParameter(f"{value} is not a multiple of 8 of at least 32")
    return value


# The same --tile for bdinn-run and bdinn-bench.
tile_option = click.option(
    "--tile",
    type=int,
    default=None,
    callback=parse_tile,
    help="Work in even pieces of at most TILE x TILE (a multiple of 8, at least 32) to bound memory "
    "[default: whole frames; on the CPU, frames over 2048x1152 pixels in even tiles of at most that many].",
)


# How bdinn-run and bdinn-bench serve a plan's plugin.
plugin_library_option = click.option(
    "--plugin-library",
    type=click.Path(path_type=Path),
    default=None,
    help="C++ TensorRT plugin library (libbdinn_trt_plugin.so) to run a plan with [default: the Python "
    "plugin, which runs every bdinn plan].",
)
allow_embedded_plugin_option = click.option(
    "--allow-embedded-plugin",
    is_flag=True,
    help="Run a plan that carries its plugin library (bdinn-export --serialize-plugin): native code "
    "that runs as the plan loads, so only for plans you trust.",
)
