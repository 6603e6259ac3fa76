"""The training loop: it learns, resumes exactly, stops cleanly on a non-finite loss."""

import json
import math
import os
import signal
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from common import TINY, Unallocatable
from safetensors.torch import load_file

from bdinn.runtime.cambi import cambi
from bdinn.runtime.debander import DEFAULT_MAX_CHANGE
from bdinn.runtime.metrics import psnr
from bdinn.train.checkpoint import CheckpointError, load_checkpoint
from bdinn.train.data import FullImageDataset, PatchDataset
from bdinn.train.image_pair import find_pairs
from bdinn.train.losses import debanding_loss
from bdinn.train.trainer import Trainer, TrainingError, TrainSettings, cosine_lr


def settings(**overrides) -> TrainSettings:
    values = {
        "config": TINY.to_dict(),
        "steps": 6,
        "batch_size": 4,
        "lr": 2e-3,
        "val_every": 3,
        "device": "cpu",
    }
    return TrainSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def datasets(paired_dirs):
    pairs = find_pairs(*paired_dirs)
    train = PatchDataset(pairs[:2], patch_size=32, stride=32, augment=True, seed=0)
    return train, FullImageDataset(pairs[2:])


def test_cosine_schedule():
    assert cosine_lr(0, 100, 1e-3, 1e-6) == pytest.approx(1e-3)
    assert cosine_lr(99, 100, 1e-3, 1e-6) == pytest.approx(1e-6)
    assert cosine_lr(50, 101, 1.0, 0.0) == pytest.approx(0.5)
    assert cosine_lr(0, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 1.0, 0.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(99, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.0)


def test_the_loss_is_l1_plus_the_weighted_l1_of_the_spectrum():
    """One pixel of one channel off by 1 in an 8x8 picture: L1 1/192, and a flat spectrum of ones
    in that channel's 8x5 real FFT, half of the 240 real and imaginary parts: 1/6."""
    target = torch.zeros(1, 3, 8, 8)
    target[0, 0, 0, 0] = 1
    prediction = torch.zeros(1, 3, 8, 8)
    assert float(debanding_loss(prediction, target, 0.0)) == pytest.approx(1 / 192)
    assert float(debanding_loss(prediction, target)) == pytest.approx(1 / 192 + 0.1 / 6)
    assert float(debanding_loss(prediction, target, 1.0)) == pytest.approx(1 / 192 + 1 / 6)


def test_a_step_uses_the_fft_weight_the_learning_rate_floor_and_the_clipping_it_is_given(datasets, tmp_path):
    """--fft-weight, --min-lr and --grad-clip each reach the step (dropping any one of them left
    every other test passing)."""
    train, val = datasets
    chosen = settings(steps=3, warmup=0, lr=1e-3, min_lr=1e-5, fft_weight=0.5, grad_clip=1e-3)
    trainer = Trainer(chosen, train, val, tmp_path)
    banded, clean = trainer._batch(0, {})
    with torch.no_grad():
        expected = float(debanding_loss(trainer.model(banded), clean, 0.5))
        at_the_default = float(debanding_loss(trainer.model(banded), clean, 0.1))
    loss, _ = trainer.train_step(banded, clean)
    assert loss == pytest.approx(expected, abs=1e-6) and abs(expected - at_the_default) > 1e-3
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()
                                                 if p.grad is not None]))  # fmt: skip
    assert float(norm) <= 1e-3 * (1 + 1e-5)
    trainer.step = 2  # the last step of three: the schedule's floor
    trainer.train_step(banded, clean)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)

    unclipped = Trainer(replace(chosen, grad_clip=0.0), train, val, tmp_path / "unclipped")
    unclipped.train_step(banded, clean)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in unclipped.model.parameters()
                                                 if p.grad is not None]))  # fmt: skip
    assert float(norm) > 1e-2


def test_training_fits_a_batch_and_writes_checkpoints(paired_dirs, datasets, tmp_path):
    """Forty steps on one fixed batch of real banded patches must lower its L1 error by 5 %."""
    fixed = PatchDataset(find_pairs(*paired_dirs)[1:2], patch_size=64, stride=64)
    _, val = datasets
    trainer = Trainer(
        settings(steps=40, val_every=20, lr=1e-3, warmup=10, batch_size=len(fixed)), fixed, val, tmp_path
    )
    banded, clean = trainer._batch(0, {})
    with torch.no_grad():
        before = float((trainer.model(banded) - clean).abs().mean())
    assert before == pytest.approx(float((banded - clean).abs().mean()), abs=1e-7)  # starts as X = Y
    trainer.run()
    with torch.no_grad():
        after = float((trainer.model(banded) - clean).abs().mean())
    assert after < 0.95 * before
    for name in ("last", "best", "state"):
        assert (tmp_path / f"{name}.safetensors").is_file() and (tmp_path / f"{name}.json").is_file()
    assert not list(tmp_path.glob("step-*"))  # kept only when asked
    meta = json.loads((tmp_path / "best.json").read_text())
    assert meta["format"] == "bdinn-checkpoint/1" and meta["step"] in (20, 40)
    assert math.isfinite(meta["metrics"]["val_psnr"]) and 0 < meta["metrics"]["val_ssim"] <= 1
    assert meta["metrics"]["val_cambi"] >= 0 and meta["metrics"]["val_cambi_clean"] >= 0


def test_validation_scores_the_8bit_outputs_and_their_targets_with_cambi(datasets, tmp_path):
    """val_cambi is CAMBI of the 8-bit output a user saves, val_cambi_clean that of the targets.

    An untrained BDINN returns its 4-bit banded input, so the two scores differ widely."""
    _, val = datasets
    trainer = Trainer(settings(), datasets[0], val, tmp_path)
    outputs, targets = [], []
    with torch.no_grad():
        for _, banded, clean in val:
            out = trainer.model(banded.unsqueeze(0))[0].clamp(0, 1).permute(1, 2, 0).numpy()
            outputs.append(np.round(out * 255).astype(np.uint8))
            targets.append(np.round(clean.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    metrics = trainer.validate()
    expected = float(np.mean([cambi(o) for o in outputs]))
    expected_clean = float(np.mean([cambi(t) for t in targets]))
    assert metrics["val_cambi"] == pytest.approx(expected, rel=1e-6)
    assert metrics["val_cambi_clean"] == pytest.approx(expected_clean, rel=1e-6)
    assert expected > expected_clean + 10 > 11  # the banded output, then the clean target


class _Brighten(torch.nn.Module):
    """Adds 10 levels to every value: far past the runtime's change limit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 10 / 255


def test_validation_scores_the_served_output_and_the_raw_network_beside_it(datasets, tmp_path):
    """val_psnr is what bdinn-run serves (every value within DEFAULT_MAX_CHANGE levels of the
    input), val_psnr_raw the network's own output; a model that moves values by 10 levels shows both."""
    _, val = datasets
    trainer = Trainer(settings(), datasets[0], val, tmp_path)
    trainer.model = _Brighten()
    served, raw = [], []
    for _, banded, clean in val:
        b8 = np.round(banded.permute(1, 2, 0).numpy() * 255)
        target = clean.permute(1, 2, 0).numpy()
        served.append(psnr(np.minimum(b8 + DEFAULT_MAX_CHANGE, 255) / 255, target))
        raw.append(psnr(np.minimum(b8 + 10, 255) / 255, target))
    metrics = trainer.validate()
    assert metrics["val_psnr"] == pytest.approx(float(np.mean(served)), abs=1e-4)
    assert metrics["val_psnr_raw"] == pytest.approx(float(np.mean(raw)), abs=1e-4)
    assert metrics["val_psnr"] > metrics["val_psnr_raw"] + 3


def test_keep_checkpoints_leaves_every_validated_step(datasets, tmp_path):
    train, val = datasets
    Trainer(settings(keep_checkpoints=True), train, val, tmp_path).run()
    kept = sorted(p.name for p in tmp_path.glob("step-*"))
    assert kept == [f"step-000000{n}.{ext}" for n in (3, 6) for ext in ("json", "safetensors")]
    metas = [json.loads((tmp_path / f"step-000000{n}.json").read_text()) for n in (3, 6)]
    assert [m["step"] for m in metas] == [3, 6] and all("val_cambi" in m["metrics"] for m in metas)
    last = load_file(tmp_path / "last.safetensors")
    six = load_file(tmp_path / "step-0000006.safetensors")
    three = load_file(tmp_path / "step-0000003.safetensors")
    assert all(torch.equal(last[k], six[k]) for k in last)
    assert any(not torch.equal(three[k], six[k]) for k in six)
    # Its training state beside them is not a model ("not a bdinn checkpoint config" said nothing)
    with pytest.raises(CheckpointError, match=r"state\.safetensors: a run's training state .*use last"):
        load_checkpoint(tmp_path / "state.safetensors")


def test_resume_replays_the_uninterrupted_run(datasets, tmp_path):
    train, val = datasets
    Trainer(settings(), train, val, tmp_path / "straight").run()
    first = Trainer(settings(), train, val, tmp_path / "split")
    first.run(stop_at=3)
    interrupted = load_file(tmp_path / "split" / "last.safetensors")
    resumed = Trainer(settings(), train, val, tmp_path / "split", resume=True)
    assert resumed.step == 3
    # else the first validation after a resume replaced best.safetensors whatever it scored
    assert math.isfinite(first.best_psnr) and resumed.best_psnr == first.best_psnr
    resumed.run()
    straight = load_file(tmp_path / "straight" / "last.safetensors")
    split = load_file(tmp_path / "split" / "last.safetensors")
    assert max(float((straight[k] - split[k]).abs().max()) for k in straight) <= 1e-6
    assert max(float((straight[k] - interrupted[k]).abs().max()) for k in straight) > 1e-5


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(path)


def _sidecar_but_time(path) -> dict:
    """A checkpoint's sidecar without its wall time, which differs between runs of the same steps."""
    meta = json.loads(path.read_text())
    assert meta["training"].pop("seconds") > 0
    return meta


def test_stopping_between_validations_changes_nothing_a_whole_run_writes(datasets, tmp_path):
    """--stop-at off a validation step saves the state only: best and last are the straight run's."""
    train, val = datasets
    Trainer(settings(), train, val, tmp_path / "straight").run()
    split = tmp_path / "split"
    Trainer(settings(), train, val, split).run(stop_at=2)
    assert sorted(p.name for p in split.iterdir()) == ["state.json", "state.safetensors"]
    Trainer(settings(), train, val, split, resume=True).run()
    for name in ("last", "best"):
        a, b = (
            _weights(tmp_path / "straight" / f"{name}.safetensors"),
            _weights(split / f"{name}.safetensors"),
        )
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
        steps = [
            json.loads((folder / f"{name}.json").read_text())["step"]
            for folder in (tmp_path / "straight", split)
        ]
        assert steps[0] == steps[1]


@pytest.mark.parametrize(("sig", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGHUP, SystemExit)])
def test_ctrl_c_lets_the_step_finish_and_saves_the_state(datasets, tmp_path, sig, raised):
    """A signal during a step acts after it; the state saved then resumes to the straight run.
    SIGHUP (a dropped SSH session) raises SystemExit under the commands, as SIGTERM does."""
    train, val = datasets
    Trainer(settings(), train, val, tmp_path / "straight").run()
    trainer = Trainer(settings(), train, val, tmp_path / "cut")
    real_step = trainer.train_step

    def step_then_ctrl_c(banded, clean):
        if trainer.step == 3:  # inside the fourth step
            os.kill(os.getpid(), sig)
        return real_step(banded, clean)

    trainer.train_step = step_then_ctrl_c
    before = signal.signal(signal.SIGHUP, lambda n, f: sys.exit(128 + n))  # as stops_cleanly has it
    try:
        with pytest.raises(raised):
            trainer.run()
    finally:
        signal.signal(signal.SIGHUP, before)
    assert json.loads((tmp_path / "cut" / "state.json").read_text())["step"] == 4
    resumed = Trainer(settings(), train, val, tmp_path / "cut", resume=True)
    assert resumed.step == 4
    resumed.run()
    a, b = (
        _weights(tmp_path / "straight" / "last.safetensors"),
        _weights(tmp_path / "cut" / "last.safetensors"),
    )
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


@pytest.mark.parametrize("step", [3, 6])  # a validation in the middle, and the last one
def test_ctrl_c_during_validation_leaves_the_checkpoint_to_the_resume(datasets, tmp_path, step):
    """A signal during a validation stopped the run with the state at that step and no checkpoint
    of it: the resumed run went on from there (at the last step: had nothing to do), so that step's
    checkpoint, and the final weights, were lost. The resume now writes it first, as it would have been."""
    train, val = datasets
    straight = tmp_path / "straight"
    Trainer(settings(keep_checkpoints=True), train, val, straight).run()
    trainer = Trainer(settings(keep_checkpoints=True), train, val, tmp_path / "cut")
    real_validate = trainer.validate

    def validate_then_ctrl_c():
        if trainer.step == step:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises it inside the validation
        return real_validate()

    trainer.validate = validate_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    cut = tmp_path / "cut"
    assert json.loads((cut / "state.json").read_text())["step"] == step
    assert sorted(p.name for p in cut.glob("step-*.json")) == [
        f"step-{s:07d}.json" for s in range(3, step, 3)
    ]
    Trainer(settings(keep_checkpoints=True), train, val, cut, resume=True).run()
    for name in ("last", "best", "step-0000003", "step-0000006"):
        a, b = (_sidecar_but_time(folder / f"{name}.json") for folder in (straight, cut))
        assert a == b  # the same step and metrics, the training loss included
        wa, wb = _weights(straight / f"{name}.safetensors"), _weights(cut / f"{name}.safetensors")
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6


def test_a_failed_validation_keeps_the_training_for_a_resume(datasets, tmp_path):
    """An error while validating (a picture it cannot score, a full disk) lost every step since
    the last checkpoint: the state is now saved first, and --resume validates that step again."""
    train, val = datasets
    trainer = Trainer(settings(), train, val, tmp_path / "run")
    trainer.validate = lambda: 1 / 0
    with pytest.raises(ZeroDivisionError):
        trainer.run()
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 3
    assert not (tmp_path / "run" / "last.json").exists()
    resumed = Trainer(settings(), train, val, tmp_path / "run", resume=True)
    resumed.run(stop_at=3)
    assert json.loads((tmp_path / "run" / "last.json").read_text())["step"] == 3


def test_a_failed_checkpoint_write_leaves_best_to_the_resume(datasets, tmp_path, monkeypatch):
    """The best score was raised before the files were written: a disk that filled up under the
    first checkpoint left a state whose resume never wrote `best` (its score was no longer
    higher). The score moves once all files of the step are on disk, `last` the last of them."""
    from bdinn.train import trainer as trainer_module

    train, val = datasets
    Trainer(settings(), train, val, tmp_path / "straight").run(stop_at=3)
    real_save = trainer_module.save_checkpoint
    calls = []

    def full_disk_once(path, *args, **kwargs):
        calls.append(path.name)
        if len(calls) == 1:
            raise OSError(28, "No space left on device", str(path))
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", full_disk_once)
    with pytest.raises(OSError, match="No space left"):
        Trainer(settings(), train, val, tmp_path / "full").run(stop_at=3)
    assert calls == ["best.safetensors"] and not (tmp_path / "full" / "last.json").exists()
    Trainer(settings(), train, val, tmp_path / "full", resume=True).run(stop_at=3)
    for name in ("best", "last"):
        a, b = (
            _sidecar_but_time(folder / f"{name}.json")
            for folder in (tmp_path / "straight", tmp_path / "full")
        )
        assert a == b


def test_pictures_smaller_than_a_patch_are_said_to_be(paired_dirs, tmp_path):
    small = PatchDataset(find_pairs(*paired_dirs), patch_size=4096, stride=4096)
    with pytest.raises(TrainingError, match=r"no training picture is as large as a patch \(4096 px\)"):
        Trainer(settings(), small, None, tmp_path / "run")


def test_pictures_none_of_which_reads_are_said_to_be(tmp_path):
    """Every picture unreadable was refused as 'no training picture is as large as a patch:
    lower --patch-size', which sends the user the wrong way."""
    for side in ("banded", "clean"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    with pytest.warns(UserWarning, match="broken"):
        unreadable = PatchDataset(
            find_pairs(tmp_path / "banded", tmp_path / "clean"), patch_size=32, stride=32
        )
    with pytest.raises(TrainingError, match=r"^no training picture could be read \(each is named above\)"):
        Trainer(settings(), unreadable, None, tmp_path / "run")


def test_resume_refuses_different_settings_or_missing_state(datasets, tmp_path):
    train, val = datasets
    Trainer(settings(steps=3), train, val, tmp_path).run()
    with pytest.raises(TrainingError, match="cannot resume with different steps, lr"):
        Trainer(settings(steps=4, lr=1e-3), train, val, tmp_path, resume=True)
    (tmp_path / "empty").mkdir()  # stopped while its pairs were made: it said "--force starts over"
    with pytest.raises(TrainingError, match="no training state to resume, the run stopped before its first"):
        Trainer(settings(), train, val, tmp_path / "empty", resume=True)
    with pytest.raises(TrainingError, match=r"missing: no such folder, so no run to resume; leave out --res"):
        Trainer(settings(), train, val, tmp_path / "missing", resume=True)  # it said "--force starts over"
    with pytest.raises(TrainingError, match=r"cannot resume with different pictures$"):
        Trainer(settings(steps=3, sources="0123456789abcdef"), train, val, tmp_path, resume=True)
    saved = settings(steps=3, sources="0123456789abcdef", pixels="fedcba9876543210:0")
    with pytest.raises(TrainingError, match=r"cannot resume with different pictures$"):  # no edit to blame
        Trainer(saved, train, val, tmp_path, resume=True)
    (tmp_path / "state.json").unlink()  # checkpoints without a state: a save that failed
    with pytest.raises(
        TrainingError, match=r"no training state to resume \(state.safetensors/.json\); --force"
    ):
        Trainer(settings(steps=3), train, val, tmp_path, resume=True)


def test_a_damaged_state_is_one_line(datasets, tmp_path):
    """Each way a state can be broken (half-saved, overwritten, edited) says so, naming the file."""
    train, val = datasets
    Trainer(settings(steps=3), train, val, tmp_path).run(stop_at=2)
    state, meta = tmp_path / "state.safetensors", tmp_path / "state.json"
    good_state, good_meta = state.read_bytes(), meta.read_text()
    cases = [
        (
            lambda: meta.write_text(good_meta.replace('"step": 2', '"step": 1')),
            "holds step 2 but state.json step 1",
        ),
        (lambda: meta.write_text("{oops"), "state.json: not valid JSON"),
        (
            lambda: meta.write_text('{"format": "bdinn-train-state/1"}'),
            "state.json: not a bdinn training state",
        ),
        (lambda: state.write_bytes(b""), "state.safetensors: unreadable"),
        (lambda: os.truncate(meta, 4 << 30), "state.json: over 16 MB, not a state"),  # read whole first
        (lambda: state.write_bytes(good_state[: len(good_state) // 2]), "state.safetensors: unreadable"),
    ]
    for damage, message in cases:
        state.write_bytes(good_state)
        meta.write_text(good_meta)
        damage()
        with pytest.raises(TrainingError, match=message) as info:
            Trainer(settings(steps=3), train, val, tmp_path, resume=True)
        assert "\n" not in str(info.value) and "start over with --force" in str(info.value)


def test_init_fine_tunes_from_a_checkpoint_with_a_fresh_schedule(datasets, tmp_path):
    train, val = datasets
    Trainer(settings(steps=3), train, val, tmp_path / "first").run()
    source = tmp_path / "first" / "last.safetensors"
    tuned = Trainer(settings(init=str(source)), train, val, tmp_path / "tuned")
    assert tuned.step == 0 and not tuned.optimizer.state
    saved = load_file(source)
    assert all(torch.equal(saved[k], v) for k, v in tuned.model.state_dict().items())
    fresh = Trainer(settings(), train, val, tmp_path / "fresh")
    assert any(not torch.equal(saved[k], v) for k, v in fresh.model.state_dict().items())
    wider = {**TINY.to_dict(), "growth": [8, 8, 8]}
    with pytest.raises(TrainingError, match="architecture differs"):
        Trainer(settings(config=wider, init=str(source)), train, val, tmp_path / "wider")
    # The coarse pass adds no weights: a fine-tune may turn it on, and trains through it.
    coarse = {**TINY.to_dict(), "coarse_pass": True}
    turned_on = Trainer(settings(config=coarse, init=str(source), steps=2), train, val, tmp_path / "coarse")
    assert all(torch.equal(saved[k], v) for k, v in turned_on.model.state_dict().items())
    turned_on.run()
    trained, _ = load_checkpoint(tmp_path / "coarse" / "last.safetensors")
    assert trained.config.coarse_pass and trained.config == turned_on.model.config
    assert any(not torch.equal(saved[k], v) for k, v in trained.state_dict().items())


class PoisonedFromEpoch(torch.utils.data.Dataset):
    """Real patches, but from the given epoch on the banded input holds NaN (corrupt data)."""

    def __init__(self, base: PatchDataset, epoch: int) -> None:
        self.base, self.poison_epoch, self.epoch = base, epoch, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        banded, clean = self.base[i]
        return (banded * math.nan if self.epoch >= self.poison_epoch else banded), clean


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(datasets, tmp_path):
    train, val = datasets
    per_epoch = len(train) // 4
    poisoned = PoisonedFromEpoch(train, epoch=1)
    trainer = Trainer(settings(steps=per_epoch + 5, val_every=per_epoch), poisoned, val, tmp_path)
    # It said "the last good checkpoint is intact" whatever last.safetensors held (a diverged step)
    said = f"non-finite loss at step {per_epoch}: stopped; .*best.safetensors is the best network validated"
    with pytest.raises(TrainingError, match=said):
        trainer.run()
    meta = json.loads((tmp_path / "last.json").read_text())
    assert meta["step"] == per_epoch
    weights = load_file(tmp_path / "last.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(("broken", "stop_at"), [(4, None), (3, 3)])
def test_an_update_that_breaks_the_weights_is_not_written_over_last(datasets, tmp_path, broken, stop_at):
    """A finite loss, then an update that left an infinite weight at a checkpoint step: it was
    written into last.safetensors and the state; between checkpoints, a run stopped there (stop_at)
    said nothing of it."""
    train, val = datasets
    trainer = Trainer(settings(steps=4, val_every=2), train, val, tmp_path)
    step, calls = trainer.optimizer.step, []

    def breaking_step(*args, **kwargs):
        result = step(*args, **kwargs)
        calls.append(1)
        if len(calls) == broken:  # the update that makes step `broken`
            next(trainer.model.parameters()).data.view(-1)[0] = math.inf
        return result

    trainer.optimizer.step = breaking_step
    said = rf"non-finite weights after step {broken}: stopped; .*best\.safetensors is"
    with pytest.raises(TrainingError, match=said):
        trainer.run(stop_at=stop_at)
    for name in ("last", "state"):  # the state was saved on the way out, and a resume failed again
        assert json.loads((tmp_path / f"{name}.json").read_text())["step"] == 2
        assert all(torch.isfinite(v).all() for v in load_file(tmp_path / f"{name}.safetensors").values())


def test_an_overflowing_error_is_a_non_finite_loss_not_a_math_error(datasets, tmp_path):
    """A loss still finite over outputs whose squares overflow (a learning rate far too high)
    ended the run with "math domain error" from the batch PSNR, not the one-line reason."""
    train, val = datasets
    trainer = Trainer(settings(), train, val, tmp_path)
    banded, clean = trainer._batch(0, {})
    with pytest.raises(TrainingError, match="non-finite loss at step 0: stopped; no checkpoint"):
        trainer.train_step(banded, clean + 1e20)  # |error| 1e20: its L1 is finite, its square is not


def test_a_network_training_broke_is_said_and_never_kept_as_best(datasets, tmp_path, capsys):
    """The change limit keeps a broken network's served output near its input, so its validation
    PSNR looked healthy and it could become best; its raw output far below the input says it."""
    train, val = datasets
    trainer = Trainer(settings(steps=6, val_every=3), train, val, tmp_path)
    trainer.run(stop_at=3)
    best = (tmp_path / "best.safetensors").read_bytes()
    healthy = json.loads((tmp_path / "best.json").read_text())["metrics"]
    assert healthy["val_psnr_raw"] > healthy["val_psnr_input"] - 1  # untrained: close to its input
    assert healthy["val_gain_raw"] == pytest.approx(healthy["val_psnr_raw"] - healthy["val_psnr_input"])
    with torch.no_grad():  # as a learning rate far too high leaves it
        for parameter in trainer.model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    trainer.run()
    last = json.loads((tmp_path / "last.json").read_text())
    assert last["step"] == 6 and last["metrics"]["val_psnr_raw"] < last["metrics"]["val_psnr_input"] - 10
    assert (tmp_path / "best.safetensors").read_bytes() == best  # still step 3's
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 3
    said = capsys.readouterr()
    assert "step 6: the raw network scores" in said.out + said.err
    assert "training has broken it (lower --lr); not kept as best" in said.out + said.err


def test_a_validation_picture_without_banding_leaves_the_rule_to_the_others(paired_dirs, tmp_path):
    """A validation input equal to its target scores an infinite PSNR: its mean made every
    network look 'inf dB below its input', and no checkpoint became best."""
    pairs = find_pairs(*paired_dirs)
    unbanded = replace(pairs[2], name="unbanded", banded=pairs[2].clean)
    train = PatchDataset(pairs[:2], patch_size=32, stride=32)
    Trainer(settings(steps=3), train, FullImageDataset([pairs[2], unbanded]), tmp_path).run()
    metrics = json.loads((tmp_path / "best.json").read_text())["metrics"]
    assert math.isfinite(metrics["val_psnr_input"]) and abs(metrics["val_gain_raw"]) < 1


def test_a_validation_picture_served_exactly_as_its_target_keeps_the_scores_finite(paired_dirs, tmp_path):
    """An untrained network returns a flat unbanded picture exactly: its PSNR was inf, so the mean
    was inf, no later step could be better, best.json held `Infinity` (not JSON) and state.json
    forgot the best, so a resume chose another."""
    pairs = find_pairs(*paired_dirs)
    flat = replace(pairs[2], name="flat", banded=pairs[2].clean)
    train = PatchDataset(pairs[:2], patch_size=32, stride=32)
    Trainer(settings(steps=2, val_every=1), train, FullImageDataset([flat]), tmp_path).run()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a record")

    best = json.loads((tmp_path / "best.json").read_text(), parse_constant=refuse)["metrics"]
    assert best["val_psnr"] == best["val_psnr_raw"] == 100.0  # bdinn-eval's cap
    state = json.loads((tmp_path / "state.json").read_text(), parse_constant=refuse)
    assert state["best_psnr"] == 100.0


def test_an_input_nearly_its_target_is_not_taken_for_a_broken_network(paired_dirs, tmp_path):
    """With the output's PSNR capped at 100 dB and the input's not, a 1280x768 input one level off
    in one sample (112.8 dB) made the raw network '12.8 dB below its own input': not kept as best."""
    from bdinn.runtime.imageio import write_image

    pairs = find_pairs(*paired_dirs)
    clean = np.full((768, 1280, 3), 120, np.uint8)
    banded = clean.copy()
    banded[0, 0, 0] += 1
    write_image(tmp_path / "near.png", clean)
    write_image(tmp_path / "near-banded.png", banded)
    near = replace(pairs[2], name="near", banded=tmp_path / "near-banded.png", clean=tmp_path / "near.png")
    train = PatchDataset(pairs[:2], patch_size=32, stride=32)
    Trainer(settings(steps=1, val_every=1), train, FullImageDataset([near]), tmp_path / "run").run()
    assert (tmp_path / "run" / "best.json").is_file()


def test_pairs_without_banding_say_so(paired_dirs, tmp_path):
    """The clean folder given as both sides: "only 0 training patches, fewer than one batch: lower
    --batch-size / --patch-size", which no batch or patch size mended."""
    clean = paired_dirs[1]
    same = [replace(pair, banded=pair.clean) for pair in find_pairs(clean, clean)]
    train = PatchDataset(same, patch_size=32, stride=32)
    assert train.patches_total > 0 == train.patches_banded
    with pytest.raises(
        TrainingError, match=rf"none of the {train.patches_total} training patches shows banding"
    ):
        Trainer(settings(batch_size=1), train, FullImageDataset(same[:1]), tmp_path)


def test_too_little_data_or_amp_on_cpu_is_a_clear_error(datasets, tmp_path):
    train, val = datasets
    with pytest.raises(TrainingError, match="fewer than one batch"):
        Trainer(settings(batch_size=len(train) + 1), train, val, tmp_path)
    with pytest.raises(TrainingError, match=r"--amp .* needs a CUDA device"):
        Trainer(settings(amp=True), train, val, tmp_path)


def test_each_epoch_has_its_own_patch_order():
    from bdinn.train.trainer import epoch_order

    orders = [epoch_order(500, 7, epoch) for epoch in range(3)]
    assert all(sorted(o.tolist()) == list(range(500)) for o in orders)  # each a permutation
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert torch.equal(epoch_order(500, 7, 1), orders[1])  # and the same again on a resume
    assert not torch.equal(epoch_order(500, 8, 1), orders[1])


def test_running_out_of_memory_in_a_step_is_a_memory_error(datasets, tmp_path):
    """bdinn-train says which settings need less memory; torch's RuntimeError was a traceback."""
    trainer = Trainer(settings(), *datasets, tmp_path)
    trainer.model = Unallocatable()
    with pytest.raises(MemoryError, match="can't allocate memory"):
        trainer.run()
