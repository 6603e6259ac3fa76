"""scripts/bundle_default_model.py: what bundling writes, run as a maintainer runs it."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from common import perturbed_tiny

from bdinn.train.checkpoint import OWN_FIELDS, load_checkpoint, read_checkpoint_meta, save_checkpoint

SCRIPT = Path(__file__).parents[1] / "scripts" / "bundle_default_model.py"


def test_sidecar_fields_are_the_ones_checkpoint_names_its_own(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", perturbed_tiny(0), config_name=None, step=3)
    assert set(read_checkpoint_meta(path)) == OWN_FIELDS


def _end(path: str, init: dict | None) -> dict:
    """A blend end's record as checkpoint_record writes it, a fine-tune of `init`."""
    origin = {"clean": ["/home/alice/walls/", "/usr/share/wallpapers"], "pairs": ["C:\\Users\\alice\\pairs"],
              "cache": "/home/alice/.cache/pairs", "train": {"x264": 3},
              "validation": {"x264": 1}}  # fmt: skip
    training = {"steps": 100, "data_origin": origin, "init": init, "seconds": 12.5}
    return {"path": path, "sha256": "ab" * 32, "step": 100, "training": training}


def test_bundles_float16_weights_the_onnx_graph_and_every_record(tmp_path):
    start = _end("/home/alice/runs/default/best.safetensors", None)
    first, second = _end("/home/alice/runs/a/best.safetensors", start), _end("b.safetensors", None)
    blend = {"first": first, "second": second, "t": 0.3}
    source = save_checkpoint(
        tmp_path / "blend.safetensors", perturbed_tiny(5), config_name="tiny", step=0,
        metrics={"val_psnr": 35.0}, extra={"interpolated": blend},
    )  # fmt: skip
    out = tmp_path / "models"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(source), "-o", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

    text = (out / "default.json").read_text()
    meta = json.loads(text)
    assert "alice" not in text and "/usr" not in text  # the maintainer's folders stay home
    origin = {"clean": ["walls", "wallpapers"], "pairs": ["pairs"], "cache": "pairs",
              "train": {"x264": 3}, "validation": {"x264": 1}}  # fmt: skip
    first, second = meta["interpolated"]["first"], meta["interpolated"]["second"]
    assert first["path"] == "best.safetensors" and first["sha256"] == "ab" * 32
    assert first["training"]["data_origin"] == origin and first["training"]["seconds"] == 12.5
    assert first["training"]["init"]["path"] == "best.safetensors"
    assert first["training"]["init"]["training"]["data_origin"] == origin
    assert second["path"] == "b.safetensors" and second["training"]["data_origin"] == origin
    assert meta["interpolated"]["t"] == 0.3
    assert meta["dtype"] == "float16"
    assert meta["source"] == "blend.safetensors" and meta["config_name"] == "tiny"
    assert meta["metrics"] == {"val_psnr": 35.0}
    bundled, _ = load_checkpoint(out / "default.safetensors")
    original = load_checkpoint(source)[0].state_dict()
    for name, value in bundled.state_dict().items():
        assert torch.equal(value, original[name].half().float()), name

    image = torch.rand(1, 3, 45, 61)
    with torch.no_grad():
        expected = bundled.eval()(image).numpy()
    session = ort.InferenceSession(str(out / "default.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: image.numpy()})
    assert got.shape == (1, 3, 45, 61)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    records = {p.key: p.value for p in onnx.load(out / "default.onnx").metadata_props}
    assert records == {"bdinn.precision": "fp32", "bdinn.graph": "gridsample"}


def test_the_bundled_graph_carries_the_records_every_export_writes():
    """It was bundled before exports recorded their precision and graph, and had neither."""
    from bdinn.runtime.files import BUNDLED_MODELS

    records = {p.key: p.value for p in onnx.load(BUNDLED_MODELS / "default.onnx").metadata_props}
    assert records == {"bdinn.precision": "fp32", "bdinn.graph": "gridsample"}


def _script() -> ModuleType:
    """The script as a module, to run its command in this process."""
    spec = importlib.util.spec_from_file_location("bundle_default_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_a_stopped_export_leaves_the_old_bundle_whole(tmp_path, monkeypatch):
    """The weights were written before the 80-s ONNX export: stopped there, the bundle held new
    weights beside the old graph, and the two backends served two networks (31 levels apart)."""
    script = _script()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "export_onnx", stopped)
    out = tmp_path / "models"
    out.mkdir()
    old = {name: f"old {name}".encode() for name in ("default.safetensors", "default.json", "default.onnx")}
    for name, data in old.items():
        (out / name).write_bytes(data)
    source = save_checkpoint(tmp_path / "new.safetensors", perturbed_tiny(7), config_name=None, step=1)
    result = CliRunner().invoke(script.main, [str(source), "-o", str(out)])
    assert result.exit_code == 130 and "Aborted!" in result.output  # the shell's status for Ctrl-C
    assert {path.name: path.read_bytes() for path in out.iterdir()} == old


def test_a_usage_mistake_is_one_line_and_exit_2(tmp_path):
    """click's four lines (usage, help hint, blank, error) named no program of a pipeline."""
    missing = tmp_path / "missing.safetensors"
    result = subprocess.run([sys.executable, str(SCRIPT), str(missing)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"bundle_default_model.py: error: Invalid value for 'CHECKPOINT': File '{missing}' does not exist "
        "(see bundle_default_model.py --help)"
    ]


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        ("file/models", "cannot write there ({tmp}/file is a file, not a folder); choose another output or "
         "check that its folder is writable and has space"),
        ("folder", "is a folder; name a file to write"),
    ],
)  # fmt: skip
def test_an_output_that_cannot_be_written_is_one_line_before_the_export(tmp_path, monkeypatch, out, problem):
    """The folder was first written after the minute-long export, and its OutputError was a traceback."""
    script = _script()

    def export_onnx(*args, **kwargs):
        raise AssertionError("exported before the output was checked")

    monkeypatch.setattr(script, "export_onnx", export_onnx)
    (tmp_path / "file").write_text("")
    (tmp_path / "folder" / "default.onnx").mkdir(parents=True)
    source = save_checkpoint(tmp_path / "new.safetensors", perturbed_tiny(7), config_name=None, step=1)
    result = CliRunner().invoke(script.main, [str(source), "-o", str(tmp_path / out)])
    assert result.exit_code == 1
    first = "default.onnx" if out == "folder" else "default.safetensors"
    problem = problem.format(tmp=tmp_path)
    assert result.stderr == f"bundle_default_model.py: error: {tmp_path / out / first}: {problem}\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "default.onnx", "file", "folder", "new.json", "new.safetensors"
    ]  # fmt: skip


def test_a_checkpoint_named_default_is_never_written_over(tmp_path):
    """Bundling folder/default.safetensors into its own folder replaced the float32 weights it read
    with their float16 copy, with exit 0."""
    source = save_checkpoint(tmp_path / "default.safetensors", perturbed_tiny(7), config_name=None, step=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = CliRunner().invoke(_script().main, [str(source), "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"bundle_default_model.py: error: {source}: is one of this command's inputs; choose another output\n"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_file_that_is_no_checkpoint_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "bad.safetensors").write_text("not a checkpoint")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "bad.safetensors"), "-o", str(tmp_path / "models")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"bundle_default_model.py: error: {tmp_path / 'bad.safetensors'}: missing its config bad.json "
        "(a bdinn checkpoint is a pair)"
    ]
    assert not (tmp_path / "models").exists()
