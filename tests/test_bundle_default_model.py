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


def test_bundles_float16_weights_the_onnx_graph_and_every_record(tmp_path):
    blend = {"first": "a.safetensors", "second": "b.safetensors", "t": 0.3}
    source = save_checkpoint(
        tmp_path / "blend.safetensors", perturbed_tiny(5), config_name="tiny", step=0,
        metrics={"val_psnr": 35.0}, extra={"interpolated": blend},
    )  # fmt: skip
    out = tmp_path / "models"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(source), "-o", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

    meta = json.loads((out / "default.json").read_text())
    assert meta["dtype"] == "float16" and meta["interpolated"] == blend
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
