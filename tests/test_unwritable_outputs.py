"""Every tool checks that it can write its output before it starts the work that leads to it."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from bdinn.export.cli import main as export_main
from bdinn.runtime.bench import main as bench_main
from bdinn.train.cli import main as train_main
from bdinn.train.evaluate import main as eval_main

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("main", "args", "target"),
    [
        (train_main, ["--clean", str(DATA)], ("-o", "run", "run/last.safetensors")),
        (export_main, [], ("-o", "model.plan", "model.plan")),
        (eval_main, ["--clean", str(DATA)], ("--json", "report.json", "report.json")),
        (bench_main, ["--size", "64x64"], ("--json", "bench.json", "bench.json")),
    ],
    ids=["bdinn-train", "bdinn-export", "bdinn-eval", "bdinn-bench"],
)
def test_an_output_under_a_file_fails_first_in_one_line(tmp_path, main, args, target):
    """A file where the output folder should be: exit 1 and one line naming the output, and the
    file is untouched; the tools get there before any training, export, evaluation or timing."""
    blocker = tmp_path / "taken"
    blocker.write_bytes(b"a file")
    option, name, reported = target
    result = CliRunner().invoke(main, [*args, option, str(blocker / name)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if "cannot write there" in line]
    assert len(errors) == 1, result.output
    assert f"{blocker / reported}: cannot write there ({blocker} is a file, not a folder)" in errors[0]
    assert blocker.read_bytes() == b"a file" and [p.name for p in tmp_path.iterdir()] == ["taken"]
