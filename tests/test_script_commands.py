"""Every script under benchmarks/ and scripts/ behaves as the bdinn commands do: one-line errors
naming the script, -h, and SIGTERM cleaning up as Ctrl-C does."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from common import MICRO, perturbed_tiny

from bdinn.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")])


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.name)
def test_a_usage_mistake_is_one_line_naming_the_script(path, monkeypatch):
    """Ten of them printed click's three lines (usage, a help hint, "Error: ..."), which do not say
    which program of a pipeline failed."""
    monkeypatch.syspath_prepend(str(path.parent))  # as when run: a script imports its neighbours
    main = load(path).main
    done = CliRunner().invoke(main, ["--no-such-option"], prog_name=path.name)
    assert done.exit_code == 2
    assert done.stderr.splitlines() == [
        f"{path.name}: error: No such option '--no-such-option' (see {path.name} --help)"
    ]
    helped = CliRunner().invoke(main, ["-h"], prog_name=path.name)
    assert helped.exit_code == 0 and helped.stdout.startswith(f"Usage: {path.name} ")


def test_sigterm_during_compare_backends_removes_its_temporary_exports(tmp_path):
    """It left its folder of ONNX files behind: only Ctrl-C unwound the temporary folder."""
    micro = perturbed_tiny(config=MICRO)
    checkpoint = save_checkpoint(tmp_path / "micro.safetensors", micro, config_name=None, step=1)
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = ROOT / "benchmarks" / "compare_backends.py"
    process = subprocess.Popen(
        [sys.executable, str(script), str(checkpoint), "--size", "32x48", "-n", "1", "--warmup", "0"],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(temp.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "finished before its temporary folder was seen"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.splitlines()[-1] == "Terminated."
    assert list(temp.iterdir()) == []
