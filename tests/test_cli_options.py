"""What every command shares: the seconds counter of long steps, and output kept to one line."""

import io
import sys
import time

from bdinn.runtime.cli_options import counting_seconds, one_line


def test_a_long_step_counts_its_seconds_on_a_terminal_only(monkeypatch):
    """bdinn-export said nothing for the minute of an ONNX export and again for the engine build."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with counting_seconds("onnx: exporting the plugin graph"):
            time.sleep(0.7)  # one tick of the counter at least
        assert ("onnx: exporting the plugin graph: 00:00" in stream.getvalue()) is shown


def test_control_characters_are_written_as_escapes():
    assert one_line("a\nb\r\x1b[31mc\td\x7f") == "a\\nb\\r\\x1b[31mc\\td\\x7f"
    assert one_line("café ✓") == "café ✓"  # printable text stays as it is
