"""Checkpoints: safetensors + JSON round trip, and one-line errors for files that are not ours."""

import json
from pathlib import Path

import pytest
import torch
from common import TINY

from bdinn.train.checkpoint import CheckpointError, checkpoint_sidecar, load_checkpoint, save_checkpoint
from bdinn.train.network import BDINNConfig, build_model


def test_round_trip_float32_and_float16(tmp_path):
    model = build_model(TINY)
    x = torch.rand(1, 3, 16, 24)
    path = save_checkpoint(
        tmp_path / "m.safetensors", model, config_name=None, step=7, metrics={"val_psnr": 40.5}
    )
    loaded, meta = load_checkpoint(path)
    assert (
        meta["step"] == 7
        and meta["metrics"]["val_psnr"] == 40.5
        and BDINNConfig.from_dict(meta["config"]) == TINY
    )
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    half = save_checkpoint(tmp_path / "h.safetensors", model, config_name=None, step=7, dtype=torch.float16)
    assert half.stat().st_size < path.stat().st_size * 0.6
    loaded_half, meta_half = load_checkpoint(half)
    assert meta_half["dtype"] == "float16"
    with torch.no_grad():
        assert (loaded_half(x) - model(x)).abs().max() < 5e-3


def test_missing_sidecar(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    checkpoint_sidecar(path).unlink()
    with pytest.raises(CheckpointError, match=r"missing its config m\.json"):
        load_checkpoint(path)


def test_not_a_bdinn_checkpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    path.write_bytes(b"\x00" * 64)
    checkpoint_sidecar(path).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a bdinn checkpoint"):
        load_checkpoint(path)
    checkpoint_sidecar(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_pickle_file_is_rejected_not_unpickled(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    # A torch.save pickle under a safetensors name must be refused, never loaded.
    torch.save(build_model(TINY).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"not a readable safetensors file \(.*\); a PyTorch pickle"):
        load_checkpoint(path)
    save_checkpoint(path, build_model(TINY), config_name=None, step=0)
    path.write_bytes(path.read_bytes()[:5000])  # cut short: not said before, nor what to do
    cut_short = r"not a readable safetensors file \(.*\); damaged or cut short: copy it again"
    with pytest.raises(CheckpointError, match=cut_short):
        load_checkpoint(path)
    path.write_bytes(b"\x80" + bytes(7) + b'{"a": ')  # a header of 128 bytes, cut: not a pickle's \x80
    with pytest.raises(CheckpointError, match=cut_short):
        load_checkpoint(path)


def test_a_checkpoint_it_may_not_read_is_not_called_missing(tmp_path, monkeypatch):
    """safetensors reports a permission-denied file as "No such file or directory"."""
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    opened = Path.open

    def denied(self: Path, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(
        CheckpointError, match=r"m\.safetensors: cannot be read \(Permission denied\); check its"
    ):
        load_checkpoint(path)
    monkeypatch.undo()
    read_text = Path.read_text

    def sidecar_denied(self: Path, *args, **kwargs):  # a bare PermissionError before
        if self.suffix == ".json":
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", sidecar_denied)
    with pytest.raises(CheckpointError, match=r"m\.json: cannot be read \(Permission denied\); check its"):
        load_checkpoint(path)


def test_a_pickled_checkpoint_is_refused_by_its_name(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(build_model(TINY).state_dict(), path)
    with pytest.raises(CheckpointError, match="bdinn never loads pickled weights"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"growth": [-1, 4, 4]}, "invalid BDINN config: growth\\[0\\]=-1"),
        ({"skip_fraction": 1.5}, "skip_fraction=1.5"),
        ("lite", "expected a JSON object of architecture settings, got str"),
        # Sizes that took gigabytes (or a traceback from torch's allocator) to build before any check
        ({"dense_depth": 100000}, "dense_depth=100000 \\(sizes .*dense_depth 1..64"),
        ({"kernel": [99999, 99999]}, "kernel=\\[99999, 99999\\]; its sizes must be odd, at most 15"),
        ({"bottleneck_blocks": 1000}, "bottleneck_blocks=1000 .*block counts 0..32"),
        ({"growth": [True, 4, 4]}, "growth\\[0\\]=True"),
    ],
)
def test_an_impossible_config_is_one_line(tmp_path, config, message):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    meta = json.loads(checkpoint_sidecar(path).read_text())
    meta["config"] = {**meta["config"], **config} if isinstance(config, dict) else config
    checkpoint_sidecar(path).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"m.json: invalid architecture config .*{message}"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"config_name": "paper"}, "config_name says 'paper', but its config is not that configuration"),
        ({"step": "abc"}, "step must be a whole number of at least 0, not 'abc'"),
        ({"step": -5}, "step must be a whole number of at least 0, not -5"),
        ({"config_name": 7}, "config_name must be a name or null, not 7"),
        ({"metrics": {"val_psnr": "high"}}, "metrics must map names to numbers"),
        ({"dtype": "bogus"}, "dtype must be one of bfloat16, float16, float32, not 'bogus'"),
        ({"training": "hello"}, "its training record must be an object or null"),
        ({"config": None, "drop": "config"}, "no architecture config \\(its 'config' entry\\)"),
    ],
)
def test_a_sidecar_edited_by_hand_is_refused_in_one_line(tmp_path, edit, message):
    """Fine-tunes, exports and records copied a sidecar's own fields on unchecked: a name saying
    'paper' over a tiny network, a step of 'abc', a training record of "hello"."""
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=3)
    meta = json.loads(checkpoint_sidecar(path).read_text())
    meta.update({k: v for k, v in edit.items() if k != "drop"})
    meta.pop(edit.get("drop", "-"), None)
    checkpoint_sidecar(path).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"m.json: {message} \\(was it edited"):
        load_checkpoint(path)


def test_a_config_asking_for_a_huge_network_is_checked_against_the_weights_before_building_it(
    tmp_path, monkeypatch
):
    """bottleneck_growth 1000 beside weights of 4: 5.6 GB and 20 s to build, then the mismatch."""
    from bdinn.train import checkpoint

    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    meta = json.loads(checkpoint_sidecar(path).read_text())
    meta["config"]["bottleneck_growth"] = 1000
    checkpoint_sidecar(path).write_text(json.dumps(meta))
    built_on = []
    real = checkpoint.BDINN

    def recording(config):
        built_on.append(torch.empty(0).device.type)  # the device factory functions use now
        return real(config)

    monkeypatch.setattr(checkpoint, "BDINN", recording)
    with pytest.raises(CheckpointError, match=r"has shape \[4\], the config needs \[1000\]"):
        load_checkpoint(path)
    assert built_on == ["meta"]


def test_a_config_of_too_many_blocks_for_its_weights_is_refused_before_building_anything(
    tmp_path, monkeypatch
):
    """The most blocks and the deepest dense blocks a config allows, beside a file of one tensor:
    even on the meta device the network took 177 s and 5.4 GB, then a bad_alloc traceback."""
    from bdinn.train import checkpoint

    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    meta = json.loads(checkpoint_sidecar(path).read_text())
    most = {"encoder_blocks": [32] * 3, "decoder_blocks": [32] * 3, "skip_blocks": [32] * 3}
    meta["config"].update(dense_depth=64, bottleneck_blocks=32, **most)
    checkpoint_sidecar(path).write_text(json.dumps(meta))
    monkeypatch.setattr(checkpoint, "BDINN", lambda config: pytest.fail("built a network"))
    with pytest.raises(CheckpointError, match=r"it needs 166400 tensors or more, the file holds \d+$"):
        load_checkpoint(path)


def test_config_weight_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    meta = json.loads(checkpoint_sidecar(path).read_text())
    meta["config"]["growth"] = [8, 4, 4]
    checkpoint_sidecar(path).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(path)
    meta["config"]["encoder_blocks"] = [2, 1, 1]
    meta["config"]["growth"] = [4, 4, 4]
    checkpoint_sidecar(path).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"do not match the config in m\.json: 16 missing \(e\.g\. \w"):
        load_checkpoint(path)  # it named "0 unexpected (e.g. [])" beside them


def test_weights_stored_as_integers_are_refused(tmp_path):
    """int32 tensors of the right names and shapes were copied into the float weights: every
    command ran a model cut to whole numbers, without a word."""
    from safetensors.torch import load_file, save_file

    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    weights = load_file(str(path))
    first = sorted(weights)[0]
    save_file(
        {**weights, first: weights[first].to(torch.int32)},
        str(path),
        metadata={"format": "bdinn-checkpoint/1"},
    )
    with pytest.raises(
        CheckpointError, match=rf"weight {first} is stored as I32; a bdinn checkpoint stores F32"
    ):
        load_checkpoint(path)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    model = build_model(TINY)
    save_checkpoint(tmp_path / "m.safetensors", model, config_name=None, step=1)
    save_checkpoint(tmp_path / "m.safetensors", model, config_name=None, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    with pytest.raises(CheckpointError, match=r"must end in \.safetensors"):
        save_checkpoint(tmp_path / "m.pt", model, config_name=None, step=0)


def test_a_full_disk_is_a_one_line_output_error(tmp_path):
    """safetensors reports a failed write as its own error, not an OSError: a full disk ended
    bdinn-train in a 40-line traceback. A file-size limit makes the same write fail for real."""
    import subprocess
    import sys

    script = f"""
import resource, signal, torch
from bdinn.runtime.files import OutputError
from bdinn.train.checkpoint import write_tensors
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    write_tensors({str(tmp_path / "w.safetensors")!r}, {{"w": torch.zeros(100_000)}})
except OutputError as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{tmp_path / 'w.safetensors'}: cannot write there (File too large); choose another output or check "
        "that its folder is writable and has space\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_config_nested_thousands_deep_is_one_line(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(TINY), config_name=None, step=0)
    checkpoint_sidecar(path).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"m\.json: not valid JSON \(RecursionError"):
        load_checkpoint(path)
    with open(checkpoint_sidecar(path), "wb") as sidecar:  # sparse: a GB of JSON took 2.3 GB to read
        sidecar.truncate(17 << 20)
    with pytest.raises(CheckpointError, match=r"m\.json: over 16 MB, not a config bdinn-train writes"):
        load_checkpoint(path)


@pytest.mark.parametrize("when", ["before our sidecar", "as ours took the name"])
def test_a_failed_save_takes_back_only_its_own_weights(tmp_path, monkeypatch, when):
    """Without replace, weights whose sidecar cannot be written are taken back, but by identity:
    a job with --force that replaced them meanwhile keeps its file (it was deleted by name, and
    then by an identity read after the rename, which the other job's could already be)."""
    from bdinn.runtime import files
    from bdinn.train import checkpoint

    path, theirs = tmp_path / "m.safetensors", tmp_path / "theirs.safetensors"
    tiny = build_model(TINY)
    save_checkpoint(theirs, tiny, config_name=None, step=9)

    def other_job() -> None:  # with --force: its weights over ours, then its sidecar
        (tmp_path / "copy").write_bytes(theirs.read_bytes())
        (tmp_path / "copy").replace(path)
        checkpoint_sidecar(path).write_text(checkpoint_sidecar(theirs).read_text())

    if when == "before our sidecar":
        real_write_json = checkpoint.write_json

        def write_json(sidecar, meta, *, replace):
            other_job()
            return real_write_json(sidecar, meta, replace=replace)

        monkeypatch.setattr(checkpoint, "write_json", write_json)
    else:
        real_publish = files._publish_new

        def publish(tmp, target):
            real_publish(tmp, target)
            if target == path:
                other_job()

        monkeypatch.setattr(files, "_publish_new", publish)
    with pytest.raises(ValueError, match="appeared while this was being written"):
        save_checkpoint(path, tiny, config_name=None, step=1, replace=False)
    assert path.read_bytes() == theirs.read_bytes() and load_checkpoint(path)[1]["step"] == 9

    monkeypatch.setattr(checkpoint, "write_json", lambda *_args, **_kwargs: 1 / 0)  # its own are taken back
    with pytest.raises(ZeroDivisionError):
        save_checkpoint(tmp_path / "n.safetensors", tiny, config_name=None, step=1, replace=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "theirs.json",
                                                          "theirs.safetensors"]  # fmt: skip
