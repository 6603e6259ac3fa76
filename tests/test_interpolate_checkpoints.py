"""scripts/interpolate_checkpoints.py: blends of two checkpoints, run as users run it."""

import hashlib
import importlib.util
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from common import TINY, perturbed_tiny

from bdinn.train.checkpoint import load_checkpoint, save_checkpoint
from bdinn.train.provenance import checkpoint_record

SCRIPT = Path(__file__).parents[1] / "scripts" / "interpolate_checkpoints.py"


def random_checkpoint(path: Path, seed: int, config=TINY) -> Path:
    return save_checkpoint(path, perturbed_tiny(seed, config), config_name=None, step=7)


def blend(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_blends_weights_linearly_and_records_how(tmp_path):
    a = random_checkpoint(tmp_path / "a.safetensors", 1)
    b = random_checkpoint(tmp_path / "b.safetensors", 2)
    wa, wb = (load_checkpoint(p)[0].state_dict() for p in (a, b))
    for t in ("0", "0.25", "1"):
        out = tmp_path / f"t{t}.safetensors"
        result = blend(str(a), str(b), "--t", t, "-o", str(out))
        assert result.returncode == 0, result.stderr
        model, meta = load_checkpoint(out)
        # Whole paths and digests: two runs' last.safetensors blended are told apart
        ends = [
            {"path": str(p.resolve()), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "step": 7,
             "training": None}
            for p in (a, b)
        ]  # fmt: skip
        assert meta["interpolated"] == {"first": ends[0], "second": ends[1], "t": float(t)}
        assert checkpoint_record(out)["interpolated"] == meta["interpolated"]  # a fine-tune of it keeps both
        for name, value in model.state_dict().items():
            expected = (1 - float(t)) * wa[name] + float(t) * wb[name]
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    for t, ends in (("0", wa), ("1", wb)):  # the ends are the inputs themselves, bit for bit
        blended = load_checkpoint(tmp_path / f"t{t}.safetensors")[0].state_dict()
        assert all(torch.equal(blended[name], ends[name]) for name in ends)


def test_a_blend_of_fine_tunes_of_different_starts_is_warned_about(tmp_path):
    """Blends are working models between fine-tunes of one start (or a fine-tune and its start);
    the records say where each started, and two fine-tunes of different starts were blended
    without a word."""

    def fine_tune(path: Path, seed: int, start: Path | None) -> Path:
        init = None if start is None else checkpoint_record(start)
        return save_checkpoint(
            path, perturbed_tiny(seed), config_name=None, step=7, extra={"training": {"init": init}}
        )

    start = fine_tune(tmp_path / "start.safetensors", 1, None)
    other = fine_tune(tmp_path / "other.safetensors", 2, None)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    a = fine_tune(tmp_path / "a" / "last.safetensors", 3, start)
    b = fine_tune(tmp_path / "b" / "last.safetensors", 4, start)
    stray = fine_tune(tmp_path / "stray.safetensors", 5, other)
    further = fine_tune(tmp_path / "further.safetensors", 6, a)  # a fine-tune of a fine-tune of start
    for ends in ((a, b), (a, start), (start, b), (further, start), (b, further)):
        result = blend(*map(str, ends), "--t", "0.3", "-o", str(tmp_path / "ok.safetensors"), "--force")
        assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert f"(1 - 0.3) x {b} + 0.3 x {further}" in result.stdout  # whole paths: two runs' last told apart
    result = blend(str(a), str(stray), "--t", "0.3", "-o", str(tmp_path / "odd.safetensors"))
    assert result.returncode == 0 and (tmp_path / "odd.safetensors").is_file()
    warning = f"interpolate_checkpoints.py: warning: {a} and {stray} are not fine-tunes of one start"
    assert warning in result.stderr


def test_refuses_other_architectures_overwrites_and_bad_t(tmp_path):
    a = random_checkpoint(tmp_path / "a.safetensors", 1)
    other = random_checkpoint(tmp_path / "o.safetensors", 2, replace(TINY, growth=(8, 8, 8)))
    result = blend(str(a), str(other), "--t", "0.5", "-o", str(tmp_path / "x.safetensors"))
    assert result.returncode == 1 and "different architectures" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.safetensors").exists()
    before = a.read_bytes()
    result = blend(str(a), str(a), "--t", "0.5", "-o", str(a))
    assert result.returncode == 2 and "would overwrite an input" in result.stderr and a.read_bytes() == before
    assert blend(str(a), str(a), "--t", "1.5", "-o", str(tmp_path / "y.safetensors")).returncode == 2
    # NaN passed FloatRange: a checkpoint of NaN weights and a sidecar that is not JSON, exit 0
    result = blend(str(a), str(a), "--t", "nan", "-o", str(tmp_path / "y.safetensors"))
    assert result.returncode == 2 and "'nan' is not a finite number" in result.stderr
    assert not list(tmp_path.glob("y.*"))
    kept = other.read_bytes()  # an existing checkpoint that is not an input: only with --force
    result = blend(str(a), str(a), "--t", "0.5", "-o", str(other))
    assert (
        result.returncode == 2
        and "already exists (pass --force" in result.stderr
        and other.read_bytes() == kept
    )
    assert blend(str(a), str(a), "--t", "0.5", "-o", str(other), "--force").returncode == 0


def test_a_start_and_its_coarse_pass_fine_tune_blend(tmp_path):
    """The coarse pass adds no weights and --init takes such a pair, but the blend refused it as
    'different architectures'. The blend keeps FIRST's setting."""
    a = random_checkpoint(tmp_path / "a.safetensors", 1)
    b = random_checkpoint(tmp_path / "b.safetensors", 2, replace(TINY, coarse_pass=True))
    for first, second, coarse in ((a, b, False), (b, a, True)):
        out = tmp_path / f"{first.stem}{second.stem}.safetensors"
        result = blend(str(first), str(second), "--t", "0.5", "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert load_checkpoint(out)[0].config.coarse_pass is coarse


def test_an_existing_sidecar_of_out_is_kept_unless_forced(tmp_path):
    """Only OUT.safetensors was checked: the JSON beside it (another checkpoint's, or the user's
    own file) was replaced without a word."""
    a = random_checkpoint(tmp_path / "a.safetensors", 1)
    theirs = tmp_path / "soup.json"
    theirs.write_text('{"mine": true}\n')
    result = blend(str(a), str(a), "--t", "0.5", "-o", str(tmp_path / "soup.safetensors"))
    assert (
        result.returncode == 2 and f"{theirs}: already exists (pass --force to overwrite it)" in result.stderr
    )
    assert theirs.read_text() == '{"mine": true}\n' and not (tmp_path / "soup.safetensors").exists()
    result = blend(str(a), str(a), "--t", "0.5", "-o", str(tmp_path / "soup.safetensors"), "--force")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(tmp_path / "soup.safetensors")[1]["interpolated"]["t"] == 0.5


def _script():
    spec = importlib.util.spec_from_file_location("interpolate_checkpoints", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("theirs", ["soup.safetensors", "soup.json"])
def test_a_checkpoint_another_job_wrote_meanwhile_is_kept(tmp_path, monkeypatch, theirs):
    """Both jobs found the name free before their work, and the last rename replaced the first
    one's weights, or paired its weights with the other's sidecar."""
    a = random_checkpoint(tmp_path / "a.safetensors", 1)
    script = _script()
    real_interpolate = script.interpolate

    def raced(*args):
        blended = real_interpolate(*args)
        (tmp_path / theirs).write_bytes(b"the other job's")
        return blended

    monkeypatch.setattr(script, "interpolate", raced)
    result = CliRunner().invoke(
        script.main, [str(a), str(a), "--t", "0.5", "-o", str(tmp_path / "soup.safetensors")]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"interpolate_checkpoints.py: error: {tmp_path / theirs}: appeared while this was being written and "
        "is kept (pass --force to overwrite it)\n"
    )
    assert (tmp_path / theirs).read_bytes() == b"the other job's"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", "a.safetensors", theirs])


def test_an_unwritable_out_is_one_line(tmp_path):
    """It was an OutputError traceback."""
    a = random_checkpoint(tmp_path / "a.safetensors", 1)
    (tmp_path / "file").write_text("not a folder")
    result = blend(str(a), str(a), "--t", "0.5", "-o", str(tmp_path / "file" / "soup.safetensors"))
    assert result.returncode == 1
    assert result.stderr.startswith("interpolate_checkpoints.py: error: ")
    assert "cannot write there" in result.stderr
    assert len(result.stderr.splitlines()) == 1
