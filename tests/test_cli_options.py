"""What every command shares: the seconds counter of long steps, and output kept to one line."""

import io
import sys
import threading
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bdinn.runtime.cli_options import counting_seconds, one_line
from bdinn.runtime.cli_reports import report_files, write_report


def test_a_long_step_counts_its_seconds_on_a_terminal_only(monkeypatch):
    """bdinn-export said nothing for the minute of an ONNX export and again for the engine build."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        before = threading.active_count()
        with counting_seconds("onnx: exporting the plugin graph"):
            time.sleep(1.3)  # the counter redraws twice a second: it reaches 00:01
        assert ("onnx: exporting the plugin graph: 00:01" in stream.getvalue()) is shown
        assert threading.active_count() <= before + 1  # the ticker has ended (tqdm may keep a monitor)


def test_control_characters_are_written_as_escapes():
    assert one_line("a\nb\r\x1b[31mc\td\x7f") == "a\\nb\\r\\x1b[31mc\\td\\x7f"
    assert one_line("café ✓") == "café ✓"  # printable text stays as it is


def test_report_files_are_checked_before_the_work_and_kept_without_force(tmp_path):
    """The benchmark scripts' --json and --markdown: a missing folder failed after the whole run
    (minutes), and an existing report was overwritten silently."""
    runs = []

    @click.command()
    @click.option("--json", "json_path", type=click.Path(path_type=Path))
    @report_files("json_path")
    def command(json_path: Path | None) -> None:
        runs.append(json_path)
        write_report(json_path, "{}\n")

    deep = tmp_path / "new" / "folder" / "r.json"
    assert CliRunner().invoke(command, ["--json", str(deep)]).exit_code == 0
    assert deep.read_text() == "{}\n"
    again = CliRunner().invoke(command, ["--json", str(deep)])
    assert again.exit_code == 1 and "r.json: already exists (pass --force to overwrite it)" in again.output
    assert len(runs) == 1  # refused before the work
    assert CliRunner().invoke(command, ["--json", str(deep), "--force"]).exit_code == 0 and len(runs) == 2
    folder = CliRunner().invoke(command, ["--json", str(tmp_path)])
    assert folder.exit_code == 1 and "is a folder" in folder.output and len(runs) == 2

    @click.command()
    @click.option("--json", "json_path", type=click.Path(path_type=Path))
    @report_files("json_path")
    def racing(json_path: Path) -> None:
        json_path.write_text("another job's\n")  # written while this one worked
        write_report(json_path, "{}\n")

    raced = tmp_path / "raced.json"
    lost = CliRunner().invoke(racing, ["--json", str(raced)])
    assert lost.exit_code == 1 and raced.read_text() == "another job's\n"
    assert CliRunner().invoke(racing, ["--json", str(raced), "--force"]).exit_code == 0
    assert raced.read_text() == "{}\n"


def test_a_report_never_replaces_the_model_it_measures_or_another_report(tmp_path):
    """--force replaces an old report, not the model (nor its JSON sidecar) the script measured."""
    runs = []

    @click.command()
    @click.argument("models", nargs=-1, type=click.Path(path_type=Path))
    @click.option("--json", "json_path", type=click.Path(path_type=Path))
    @click.option("--markdown", "markdown_path", type=click.Path(path_type=Path))
    @report_files("json_path", "markdown_path", models="models")
    def command(models: tuple[Path, ...], json_path: Path | None, markdown_path: Path | None) -> None:
        runs.append(models)

    first, second = tmp_path / "a.safetensors", tmp_path / "b.onnx"
    for model in (first, second):
        model.write_bytes(b"weights")
    for target in (second, tmp_path / "a.json", tmp_path / "sub" / ".." / "b.onnx"):
        refused = CliRunner().invoke(command, [str(first), str(second), "--json", str(target), "--force"])
        assert refused.exit_code == 1, target
        assert refused.output == f"Error: {target}: is one of this command's inputs; choose another output\n"
    twice = CliRunner().invoke(command, ["--json", str(tmp_path / "r"), "--markdown", str(tmp_path / "r")])
    assert twice.exit_code == 1
    assert twice.output == f"Error: {tmp_path / 'r'}: named for two reports; give each its own file\n"
    dash = CliRunner().invoke(command, ["--json", "-"], catch_exceptions=False)  # it wrote a file '-'
    assert dash.exit_code == 2 and "'-' as a report: these write reports to files" in dash.output
    assert runs == [] and first.read_bytes() == second.read_bytes() == b"weights"
    fine = CliRunner().invoke(command, [str(first), "--json", str(tmp_path / "r.json")])
    assert fine.exit_code == 0 and runs == [(first,)]


def test_without_a_model_a_report_never_replaces_the_bundled_one(tmp_path, monkeypatch):
    """headroom.py --json <bundled default.json> --force replaced the bundled model's sidecar with
    its report: only a named model was protected. The bundled folder here is a copy."""
    from bdinn.runtime import files

    bundled = tmp_path / "models"
    bundled.mkdir()
    (bundled / "default.json").write_text("{}")
    monkeypatch.setattr(files, "BUNDLED_MODELS", bundled)

    @click.command()
    @click.argument("models", nargs=-1, type=click.Path(path_type=Path))
    @click.option("--json", "json_path", type=click.Path(path_type=Path))
    @report_files("json_path", models="models")
    def command(models: tuple[Path, ...], json_path: Path | None) -> None:
        write_report(json_path, "report\n")

    refused = CliRunner().invoke(command, ["--json", str(bundled / "default.json"), "--force"])
    assert refused.exit_code == 1
    assert (
        refused.output
        == f"Error: {bundled / 'default.json'}: is one of this command's inputs; choose another output\n"
    )
    assert (bundled / "default.json").read_text() == "{}"
    named = tmp_path / "mine.onnx"
    named.write_bytes(b"graph")
    assert (
        CliRunner()
        .invoke(command, [str(named), "--json", str(bundled / "default.json"), "--force"])
        .exit_code
        == 0
    )


SPENDS_ITS_TIME_IN_FINALISERS = """
import os, signal, sys, time, weakref
from bdinn.runtime import cli_options

calls = []

class Held:
    pass

def busy(seconds):
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        pass

def finaliser(reference):  # Python code inside a weakref callback, as torch.export's
    calls.append(1)
    if len(calls) == 20:
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, inside the finaliser
    busy(0.001)

@cli_options.stops_cleanly
def work():
    started = time.monotonic()
    while time.monotonic() - started < 20:
        held = Held()
        reference = weakref.ref(held, finaliser)
        del held
        busy(0.001)
    print("finished all the work", file=sys.stderr)

work()
"""


def test_a_sigterm_that_lands_in_a_finaliser_still_ends_the_command():
    """Python prints and drops an exception raised inside a finaliser (torch.export's weakref
    callbacks): compare_backends.py, signalled during its exports, timed every backend after it."""
    import signal
    import subprocess

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SPENDS_ITS_TIME_IN_FINALISERS], capture_output=True, text=True
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert time.monotonic() - started < 15 and "finished all the work" not in done.stderr
    assert done.stderr.splitlines()[-1] == "Terminated." and "Exception ignored" not in done.stderr


def test_reports_are_written_in_utf8_whatever_the_locale(tmp_path):
    """export_report.py's table has arrows; under an ASCII locale write_text failed on them."""
    import os
    import subprocess

    report = tmp_path / "report.md"
    script = (
        "import pathlib, sys; from bdinn.runtime.cli_reports import write_report; "
        "write_report(pathlib.Path(sys.argv[1]), 'a \\u2192 b \\u00b12\\n')"
    )
    ascii_locale = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(report)], capture_output=True, text=True, env=ascii_locale
    )
    assert done.returncode == 0, done.stderr
    assert report.read_text(encoding="utf-8") == "a → b ±2\n"


def test_a_loop_of_symbolic_links_met_anywhere_in_a_command_is_one_line(tmp_path):
    """Path.resolve() raises RuntimeError on a loop (Python 3.10-3.12): bdinn-export, bdinn-bench
    and bdinn-train met it comparing an output with their inputs, as a traceback."""
    from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly

    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")

    @click.command(cls=BdinnCommand)
    @stops_cleanly
    def command() -> None:
        (tmp_path / "a" / "out.onnx").resolve()

    if sys.version_info >= (3, 13):
        pytest.skip("Path.resolve() raises no RuntimeError on a loop from Python 3.13")
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 1
    assert result.output == (
        f"command: error: {tmp_path / 'a' / 'out.onnx'}: a loop of symbolic links (one points back to "
        "another); remove it or give another path\n"
    )


def test_a_signal_ignored_before_a_deferred_block_stays_ignored():
    """Under nohup, a hangup during the TensorRT parse or build was caught and acted on: the build
    was cancelled and the export failed."""
    import os
    import signal

    from bdinn.runtime.stop_signals import signals_deferred

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_deferred() as caught:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)  # the handler, if any, runs
        assert caught == [] and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_warning_that_cannot_be_printed_does_not_stop_the_work(monkeypatch):
    """bdinn-export 2>&1 | head -2 with an unwritable engine cache: its 'not cached' warning,
    unprintable, failed the export after the engine was built, and the engine was taken back."""
    import warnings

    from bdinn.runtime.cli_options import one_line_warnings

    class Full(io.StringIO):  # 2>/dev/full
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(sys, "stderr", Full())
    with one_line_warnings():
        warnings.warn("the engine is built, but not cached", stacklevel=1)
    # reached: the OSError of the print was not raised


def test_a_lossy_bar_is_cleared_for_a_line_and_outlives_its_stream(monkeypatch):
    """deband_video's bar: a write that failed (2>&1 | head after head left) stopped the video it
    drew; drawn through a wrapper of stderr, a warning was glued onto its half-drawn line (tqdm
    clears only the bars drawn on the very stream a line goes to)."""
    from bdinn.runtime.console import LossyBar, tell

    class Terminal(io.StringIO):
        gone = False  # its reader left

        def write(self, text: str) -> int:
            if self.gone:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

        def flush(self) -> None:
            if self.gone:
                raise BrokenPipeError(32, "Broken pipe")

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = LossyBar(total=4, ncols=60, mininterval=0, desc="clip")
    bar.update(1)
    drawn = len(terminal.getvalue())
    tell("Warning: the model gave NaN values")
    said = terminal.getvalue()[drawn:]
    assert said.startswith("\r") and "\rWarning: the model gave NaN values\n" in said
    assert said.index("Warning") < said.index("clip")  # the bar drawn again below the line
    terminal.gone = True
    bar.update(1)
    bar.update(1)
    tell("lost")
    bar.close()
    assert "lost" not in terminal.getvalue()
    LossyBar(total=4, desc="late").update(1)  # made on a stream already gone: draws nothing, raises nothing


def test_a_signal_while_tensorrt_imports_is_not_taken_for_a_missing_tensorrt(tmp_path):
    """pybind11 turns an exception raised in a module's initialisation into ImportError: a SIGTERM
    while tensorrt_rtx loaded was 'TensorRT is not installed or does not load'. A stand-in module
    does what that initialisation does with the signal's exception."""
    import subprocess

    from stand_ins import signalled_in_import

    modules = signalled_in_import(tmp_path, "tensorrt_rtx")
    code = (
        "import signal; signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))\n"
        "from bdinn.runtime.tensorrt import load_tensorrt; load_tensorrt('tensorrt-rtx')"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(modules)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 143, done.stderr
    assert "not installed" not in done.stderr
