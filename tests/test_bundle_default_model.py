"""scripts/bundle_default_model.py: what bundling writes, run as a maintainer runs it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
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


def test_a_stopped_export_leaves_the_old_bundle_whole(tmp_path, monkeypatch):
    """The weights were written before the 80-s ONNX export: stopped there, the bundle held new
    weights beside the old graph, and the two backends served two networks (31 levels apart)."""
    import importlib.util

    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location("bundle_default_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

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
    assert result.exit_code == 1  # click turns Ctrl-C into "Aborted!"
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
