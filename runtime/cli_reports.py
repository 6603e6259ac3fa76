"""Where the command-line tools put their results: report files (--json, --markdown) checked
before the work and written whole, and a result echoed on standard output after them."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from .files import OutputError, atomic_write_text, check_writable, files_of_model

P = ParamSpec("P")
R = TypeVar("R")


def echo_result(text: str, what: str) -> None:
    """Print a command's result on standard output after its files are written: a full disk or a
    closed pipe there loses only the echo, said in one line ("could not print WHAT"), and a
    standard output closed from the start (>&-) none at all."""
    try:
        click.echo(text, nl=False)
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as exc:
        raise click.ClickException(f"could not print {what} ({exc.strerror or exc})") from None


_REPORT_FORCE = "bdinn.report_force"  # report_files' --force, for write_report


class ReportFile(click.Path):
    """A report file's path. A name ending in a slash is refused: Path drops the slash, and a
    file of the folder's name was written where the user meant a folder."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.endswith(("/", os.sep)):
            self.fail(f"{value!r} names a folder; name a file to write", param, ctx)
        return super().convert(value, param, ctx)


# A script's --json FILE (checked before the work by report_files): written beside its table.
json_option = click.option("--json", "json_path", type=ReportFile(), help="Also write JSON.")


def report_files(
    *names: str, models: str | None = None, bundled_default: bool = True, folders: tuple[str, ...] = ()
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """-f/--force for a command that writes reports (the options `names`: --json, --markdown),
    which are checked before its work, as bdinn's commands check theirs: each can be written (a
    missing folder failed after minutes of benchmarking), an existing one is replaced only with
    --force, and none is the model it measures (the argument `models`: one path or several, with
    their sidecars; none given, the bundled model's files, unless `bundled_default` is False for
    a command that then runs no model), a file of its input folders (the arguments `folders`: a
    --clean picture) or another report, even with --force. The command writes them with
    write_report."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, force: bool = False, **kwargs: P.kwargs) -> R:
            click.get_current_context().meta[_REPORT_FORCE] = force
            given = _paths(kwargs.get(models)) if models else []
            if models and not given and bundled_default:  # what then runs is the bundled model
                inputs = files_of_model(None)
            else:
                inputs = [f for model in given for f in files_of_model(model)]
            for folder in (kwargs.get(name) for name in folders):
                inputs += [path for path in Path(folder).iterdir() if path.is_file()] if folder else []
            reports = [Path(kwargs[name]) for name in names if kwargs.get(name) is not None]
            if Path("-") in reports:  # it wrote a file named '-', where bdinn-bench prints to stdout
                raise click.UsageError(
                    "'-' as a report: these write reports to files (the table is printed); name one"
                )
            try:
                for index, report in enumerate(reports):
                    if report.resolve() in {earlier.resolve() for earlier in reports[:index]}:
                        raise OutputError(f"{report}: named for two reports; give each its own file")
                    check_writable(report, inputs, replace=force)
            except OutputError as exc:
                raise click.ClickException(str(exc)) from None
            return command(*args, **kwargs)

        return click.option("-f", "--force", is_flag=True, help="Overwrite existing report files.")(wrapper)

    return decorate


def _paths(given: Any) -> list[Any]:
    """A model argument's paths: none, one, or click's tuple of several (nargs=-1)."""
    if given is None:
        return []
    return list(given) if isinstance(given, tuple | list) else [given]


def write_report(path: Path, text: str) -> None:
    """A report file report_files checked, written whole (a folder it needs is made); one that
    another job wrote meanwhile is kept unless --force."""
    context = click.get_current_context(silent=True)
    replace = context is None or context.meta.get(_REPORT_FORCE, True)
    try:
        atomic_write_text(path, text, replace=replace)
    except OutputError as exc:  # a disk that filled up since the check
        raise click.ClickException(str(exc)) from None
