"""What every command shares: the seconds counter of long steps, and output kept to one line."""

import io
import sys
import threading
import time

from bdinn.runtime.cli_options import counting_seconds, one_line


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
