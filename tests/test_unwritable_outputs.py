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


@pytest.fixture()
def model(tmp_path) -> Path:
    """A copy of the bundled ONNX model: an input the reports must never overwrite."""
    from bdinn.runtime.debander import default_model_path

    copy = tmp_path / "model.onnx"
    copy.write_bytes(default_model_path("onnxruntime").read_bytes())
    return copy


def test_reports_never_overwrite_an_input(tmp_path, model):
    before = model.read_bytes()
    result = CliRunner().invoke(bench_main, [str(model), "--size", "64x64", "--json", str(model)])
    assert result.exit_code == 1 and f"{model}: is one of this command's inputs" in result.output
    clean = tmp_path / "clean"
    clean.mkdir()
    picture = clean / "sky.png"
    picture.write_bytes((DATA / "sky-gradient.png").read_bytes())
    for option, target in (("--markdown", model), ("--json", picture), ("--json", tmp_path / "model.json")):
        result = CliRunner().invoke(eval_main, [str(model), "--clean", str(clean), option, str(target)])
        assert result.exit_code == 1 and f"{target}: is one of this command's inputs" in result.output
    both = ["--json", str(tmp_path / "r"), "--markdown", str(tmp_path / "." / "r")]
    result = CliRunner().invoke(eval_main, [str(model), "--clean", str(clean), *both])
    assert result.exit_code == 1 and "--json and --markdown name the same file" in result.output
    assert model.read_bytes() == before and picture.read_bytes() == (DATA / "sky-gradient.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "model.onnx"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.json", "--onnx-only"], "model.json: name it NAME.onnx (drop --onnx-only for an engine)"),
        (["x.onnx"], "x.onnx: name it NAME.plan or NAME.engine (add --onnx-only for an ONNX model)"),
        (["x.plan", "--onnx-only"], "x.plan: name it NAME.onnx (drop --onnx-only for an engine)"),
    ],
)
def test_export_outputs_are_named_for_what_they_hold_and_spare_the_checkpoint(tmp_path, args, message):
    from common import perturbed_tiny

    from bdinn.train.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "model.safetensors", perturbed_tiny(), config_name=None, step=1)
    sidecar = ckpt.with_suffix(".json")
    before = sidecar.read_bytes()
    name, *options = args  # the first is the output, in tmp_path: model.json is the checkpoint's own
    result = CliRunner().invoke(export_main, [str(ckpt), "-o", str(tmp_path / name), *options])
    assert result.exit_code in (1, 2) and message in " ".join(result.output.split()), result.output
    assert sidecar.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_a_report_into_a_named_pipe_is_refused_before_the_work(tmp_path):
    """The write goes to a temporary file renamed over the output: a named pipe (a player reading
    the report, `--json /dev/stdout`) would have been replaced by a file."""
    import os

    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    result = CliRunner().invoke(bench_main, ["--size", "64x64", "--json", str(fifo)])
    assert result.exit_code == 1 and fifo.is_fifo()
    assert result.output.splitlines() == [
        f"bdinn-bench: error: {fifo}: is a named pipe or device, not a file; name a file to write"
    ]
