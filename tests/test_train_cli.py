"""`bdinn-train` end to end: synthetic pairs from the bundled pictures, errors, torchrun DDP."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from common import TINY
from PIL import Image
from safetensors.torch import load_file

from bdinn.runtime.imageio import read_image, write_image
from bdinn.train.cli import main
from bdinn.train.data import large_enough, split_by_source
from bdinn.train.image_pair import find_pairs
from bdinn.train.pairs_cache import prepare_synthetic_pairs
from bdinn.train.trainer import pairs_fingerprint

DATA = Path(__file__).parent / "data"
FAST = [
    "--patch-size",
    "32",
    "--stride",
    "32",
    "--steps",
    "4",
    "--val-every",
    "2",
    "--warmup",
    "2",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY.to_dict()))
    return path


def test_trains_from_clean_pictures(tmp_path, tiny_config):
    result = CliRunner().invoke(
        main,
        [
            *("--clean", str(DATA), "--config", str(tiny_config), "--variants", "2", "-o", str(tmp_path)),
            *("--unbanded-share", "0.3", "--identity-share", "0.2", "--max-val-images", "1", *FAST),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "data: 4 training / 2 validation images (1 scored), " in result.output
    found = re.search(
        r"(\d+) of (\d+) patches show banding, (\d+) without banding, (\d+) clean as", result.output
    )
    banded, total, unbanded, identity = map(int, found.groups())
    assert 0 < unbanded <= banded < total and banded + unbanded <= total and identity > 0
    # these pictures have fewer banding-free patches than the share asks for: said, not silent
    short = re.search(r"--unbanded-share 0.3: only (\d+) such patches to draw of the (\d+)", result.output)
    assert short and int(short.group(1)) == unbanded < int(short.group(2))
    assert "stopped at step 4/4" in result.output
    assert len(list((tmp_path / "pairs" / "banded").glob("*.png"))) == 6
    meta = json.loads((tmp_path / "best.json").read_text())
    assert meta["config"]["growth"] == [4, 4, 4] and meta["config_name"] is None
    # How it was trained travels with the weights: recipe, data and its banding, start, hardware.
    record = meta["training"]
    assert (record["steps"], record["lr"], record["data"]["patch_size"]) == (4, 2e-4, 32)
    assert record["data"]["identity_share"] == 0.2 and record["init"] is None
    origin = record["data_origin"]
    assert origin["clean"] == [str(DATA)] and origin["cache"] == str(tmp_path / "pairs")
    assert record["max_val_images"] == 1
    assert sum(origin["train"].values()) == 4 and sum(origin["validation"].values()) == 2
    # Two kinds of banding held out and one picture scored: best is chosen blind to the other.
    left_out = re.search(r"--max-val-images 1 holds no (\S+) picture: validation does not", result.output)
    assert len(origin["validation"]) == 2 and left_out and left_out.group(1) in origin["validation"]
    assert "that banding; 2 would score every kind" in result.output
    assert record["hardware"]["device"] == "cpu" and record["hardware"]["threads"] >= 1
    assert 0 < record["seconds"] < 600 and record["versions"]["torch"]
    # scripts/validation_split.py links the pictures this run held out, by its recorded settings,
    # and adds nothing to its cache.
    cached = sorted(p.name for p in (tmp_path / "pairs").rglob("*"))
    script = Path(__file__).parents[1] / "scripts" / "validation_split.py"
    (tmp_path / "val").mkdir()  # a folder an earlier split filled: its link would be scored too
    stale = next((tmp_path / "pairs" / "clean").iterdir())
    (tmp_path / "val" / "earlier-split.png").symlink_to(stale)
    (tmp_path / "val" / "notes.txt").write_text("the user's own")
    done = subprocess.run(
        [sys.executable, str(script), "--clean", str(DATA), "--run", str(tmp_path),
         "-o", str(tmp_path / "val")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"1 validation picture linked into {tmp_path / 'val'}"  # 2 pairs of one
    assert sorted(p.name for p in (tmp_path / "pairs").rglob("*")) == cached
    assert not (tmp_path / "val" / "earlier-split.png").is_symlink()
    assert (tmp_path / "val" / "notes.txt").read_text() == "the user's own"
    held_out = {p.resolve() for p in (tmp_path / "val").iterdir() if p.is_symlink()}
    state = json.loads((tmp_path / "state.json").read_text())
    assert len(held_out) == 1 and state["settings"]["data"]["variants"] == 2
    # The pictures validation scores are part of the run: their order changed once (a picture not yet
    # scored now comes first), and a run resumed across that compared best over other pictures.
    again = [*("--clean", str(DATA), "--config", str(tiny_config), "--variants", "2", "-o", str(tmp_path))]
    again += [
        *("--unbanded-share", "0.3", "--identity-share", "0.2", "--max-val-images", "1", *FAST, "--resume")
    ]
    assert len(state["settings"]["val_sample"]) == 16
    for sample, said in (
        (None, "does not say which pictures its validation scored"),
        ("0123456789abcdef", "cannot resume with different validation pictures"),
    ):
        edited = dict(state, settings={k: v for k, v in state["settings"].items() if k != "val_sample"})
        if sample:
            edited["settings"]["val_sample"] = sample
        (tmp_path / "state.json").write_text(json.dumps(edited))
        resumed = CliRunner().invoke(main, again)
        assert said in resumed.output and resumed.exit_code == (1 if sample else 0), resumed.output


def test_a_run_resumed_from_a_copied_cache_records_where_its_pictures_came_from(
    tmp_path, tiny_config, monkeypatch
):
    """The record is the run's: resumed on another machine from a copy of its pairs cache, it
    named no --clean folder and the copy as the cache. Folders given relative to the working
    folder are recorded whole, as the start's and a blend's paths are."""
    monkeypatch.chdir(tmp_path)
    run = [*FAST, "--config", str(tiny_config), "--variants", "2", "-o", "run"]
    first = CliRunner().invoke(main, [*run, "--clean", os.path.relpath(DATA), "--stop-at", "2"])
    assert first.exit_code == 0, first.output
    shutil.copytree(tmp_path / "run" / "pairs", tmp_path / "moved")
    resumed = CliRunner().invoke(main, [*run, "--cache-dir", str(tmp_path / "moved"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    origin = json.loads((tmp_path / "run" / "last.json").read_text())["training"]["data_origin"]
    assert origin["clean"] == [str(DATA.resolve())]
    assert origin["cache"] == str((tmp_path / "run" / "pairs").resolve())


def test_a_resume_refuses_a_picture_edited_since_the_run_started(tmp_path, tiny_config):
    """The pairs were made again from the edited picture under the same names, and the resumed run
    trained and validated on them without a word (weights and best apart from an uninterrupted
    run's); a resume of the same pictures moved and recompressed still goes on."""
    clean = tmp_path / "clean"
    shutil.copytree(DATA, clean, ignore=shutil.ignore_patterns("*.md"))
    run = [*FAST, "--clean", str(clean), "--config", str(tiny_config), "--variants", "2"]
    first = CliRunner().invoke(main, [*run, "-o", str(tmp_path / "run"), "--stop-at", "2"])
    assert first.exit_code == 0, first.output
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    moved = tmp_path / "copy" / "pairs"
    for picture in moved.glob("*/*.png"):  # another lossless format: the same pixels
        write_image(picture.with_suffix(".tiff"), read_image(picture))
        picture.unlink()
    cache_only = [
        *FAST,
        "--config",
        str(tiny_config),
        "--cache-dir",
        str(moved),
        "-o",
        str(tmp_path / "copy"),
    ]
    assert CliRunner().invoke(main, [*cache_only, "--resume"]).exit_code == 0
    sky = read_image(clean / "sky-gradient.png")
    write_image(clean / "sky-gradient.png", sky[::-1].copy())  # edited: same name, same size
    resumed = CliRunner().invoke(main, [*run, "-o", str(tmp_path / "run"), "--resume"])
    assert resumed.exit_code == 1
    assert "cannot resume with different picture content (one edited since the run started" in resumed.output


def test_a_run_resumes_from_a_copied_cache_another_run_added_pairs_to(tmp_path, tiny_config):
    """A cache shared with a run of another seed listed both runs' pairs, so resuming from a copy
    of it was refused ("cannot resume with different pictures"); a seed it holds no pairs of is
    named in one line."""
    run = [*FAST, "--config", str(tiny_config), "--variants", "2", "-o", str(tmp_path / "run")]
    first = CliRunner().invoke(main, [*run, "--clean", str(DATA), "--stop-at", "2"])
    assert first.exit_code == 0, first.output
    prepare_synthetic_pairs([DATA], tmp_path / "run" / "pairs", variants_per_image=2, seed=5)
    shutil.copytree(tmp_path / "run" / "pairs", tmp_path / "moved")
    resumed = CliRunner().invoke(main, [*run, "--cache-dir", str(tmp_path / "moved"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "stopped at step 4/4" in resumed.output
    three = ["--seed", "3", "--cache-dir", str(tmp_path / "moved"), "-o", str(tmp_path / "three")]
    other = CliRunner().invoke(main, [*FAST, "--config", str(tiny_config), *three])
    assert other.exit_code == 1
    assert re.fullmatch(
        r"bdinn-train: error: .*manifest\.json: the cache holds no pairs made with --seed 3; it holds "
        r"pairs made with --seed 0 --variants 2 --max-side 1920; --seed 5 --variants 2 --max-side 1920 "
        r"\(pass those, or make the pairs with --clean DIR\)\n",
        other.output,
    )


def test_a_run_from_a_cache_alone_is_its_preparation_and_resumes_as_one(tmp_path, tiny_config):
    """A run from a cache alone trained on its latest preparation (seed 5, 2 variants) but recorded
    the command's defaults (seed 0, 3 variants): its resume asked the cache for pairs of seed 0
    and was refused, and naming seed 5 was refused as other settings than the run's. A preparation
    added to the cache since does not change what the resume trains on."""
    cache = tmp_path / "cache"
    prepare_synthetic_pairs([DATA], cache, variants_per_image=2, seed=5)
    run = [*FAST, "--config", str(tiny_config), "--cache-dir", str(cache), "-o", str(tmp_path / "run")]
    first = CliRunner().invoke(main, [*run, "--stop-at", "2"])
    assert first.exit_code == 0, first.output
    settings = json.loads((tmp_path / "run" / "state.json").read_text())["settings"]
    assert (settings["seed"], settings["data"]["variants"], settings["data"]["max_side"]) == (5, 2, 1920)
    prepare_synthetic_pairs([DATA], cache, variants_per_image=3, seed=0)  # now the latest
    resumed = CliRunner().invoke(main, [*run, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "stopped at step 4/4" in resumed.output


def test_trains_from_a_copied_cache_alone(tmp_path, tiny_config):
    """A pairs cache moved to another machine, without its banded pictures, trains as --clean did."""
    made = prepare_synthetic_pairs([DATA], tmp_path / "made", variants_per_image=2)
    shutil.copytree(tmp_path / "made", tmp_path / "moved")
    for banded in (tmp_path / "moved" / "banded").iterdir():
        banded.unlink()
    args = ["--cache-dir", str(tmp_path / "moved"), "--config", str(tiny_config), *FAST]
    result = CliRunner().invoke(main, [*args, "--keep-checkpoints", "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "data: 4 training / 2 validation images" in result.output
    assert "stopped at step 4/4" in result.output
    assert sorted(p.name for p in (tmp_path / "run").glob("step-*.safetensors")) == [
        "step-0000002.safetensors",
        "step-0000004.safetensors",
    ]
    assert len(list((tmp_path / "moved" / "banded").glob("*.png"))) == len(made) == 6

    (tmp_path / "moved" / "manifest.json").unlink()
    broken = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "again")])
    assert broken.exit_code == 1
    assert re.fullmatch(
        r"bdinn-train: error: .*manifest\.json: no pairs cache here \(make one with --clean DIR .*\)",
        broken.output.strip(),
    )


def test_trains_from_paired_folders_and_resumes(tmp_path, tiny_config, paired_dirs):
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path), *FAST]
    early = CliRunner().invoke(
        main, [*args, "--stop-at", "1", "--warmup", "4", "-o", str(tmp_path / "early")]
    )
    assert "stopped at step 1/4: loss" in early.output
    assert "training state (no checkpoint yet) in" in early.output
    assert "Warning: --warmup 4 leaves --steps 4 no step to decay in" in early.output
    first = CliRunner().invoke(main, [*args, "--stop-at", "2"])
    assert first.exit_code == 0, first.output
    assert "stopped at step 2/4" in first.output
    before = (tmp_path / "last.safetensors").read_bytes()
    again = CliRunner().invoke(main, args)  # neither --resume nor --force: the run is left alone
    assert again.exit_code == 1
    assert f"{tmp_path}: holds a run already (last.safetensors); pass --resume to continue it" in again.output
    assert (tmp_path / "last.safetensors").read_bytes() == before
    other_patches = CliRunner().invoke(main, [*args, "--resume", "--stride", "16"])  # other batches
    assert other_patches.exit_code == 1 and "cannot resume with different data" in other_patches.output
    state = json.loads((tmp_path / "state.json").read_text())
    for recorded in ("seconds", "init_record"):  # as a state saved before the training record
        del state[recorded]
    del state["settings"]["data_origin"]
    (tmp_path / "state.json").write_text(json.dumps(state))
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "stopped at step 4/4" in resumed.output
    record = json.loads((tmp_path / "last.json").read_text())["training"]
    assert record["seconds"] is None and record["data_origin"]["pairs"] == [str(p) for p in paired_dirs]
    assert "hardware_parts" not in record  # resumed on the same hardware: one part, said once
    restarted = CliRunner().invoke(main, [*args, "--force", "--stop-at", "1"])
    assert restarted.exit_code == 0, restarted.output
    assert "stopped at step 1/4" in restarted.output


@pytest.mark.parametrize("saved_before_parts", [False, True])
def test_a_run_resumed_on_other_hardware_records_each_part(
    tmp_path, tiny_config, paired_dirs, saved_before_parts
):
    """A run started on one machine and resumed on another (a CPU, then torchrun on GPUs) recorded
    only the last one's hardware. A state saved before parts were recorded has a first part of
    unknown hardware."""
    import torch

    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path), *FAST]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert CliRunner().invoke(main, [*args, "--stop-at", "2"]).exit_code == 0
        if saved_before_parts:
            state = json.loads((tmp_path / "state.json").read_text())
            del state["hardware_parts"]
            (tmp_path / "state.json").write_text(json.dumps(state))
        torch.set_num_threads(2)  # what these CPU tests can change of the hardware between parts
        resumed = CliRunner().invoke(main, [*args, "--resume"])
    finally:
        torch.set_num_threads(threads)
    assert resumed.exit_code == 0, resumed.output
    record = json.loads((tmp_path / "last.json").read_text())["training"]
    parts = [(part["steps"], part.get("threads")) for part in record["hardware_parts"]]
    assert parts == [([0, 2], None if saved_before_parts else 1), ([2, 4], 2)]
    assert record["hardware"]["threads"] == 2


def test_train_seed_repeats_a_run_on_the_same_pairs_and_split(tmp_path, tiny_config, paired_dirs):
    """--seed draws the split too, so only --train-seed gives a second training of the same data."""
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), *FAST, "--seed", "3"]
    runs = {}
    for name, extra in {
        "plain": [],
        "spelled": ["--train-seed", "3"],
        "other": ["--train-seed", "4"],
    }.items():
        result = CliRunner().invoke(main, [*args, *extra, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        record = json.loads((tmp_path / name / "last.json").read_text())["training"]
        runs[name] = (record, load_file(tmp_path / name / "last.safetensors"))
    (plain, plain_weights), (spelled, spelled_weights), (other, other_weights) = runs.values()
    assert plain["train_seed"] == spelled["train_seed"] == 3 and other["train_seed"] == 4
    assert plain["sources"] == other["sources"] and plain["data_origin"] == other["data_origin"]
    assert all(torch.equal(plain_weights[k], spelled_weights[k]) for k in plain_weights)
    moved = max((plain_weights[k] - other_weights[k]).abs().max().item() for k in plain_weights)
    assert moved > 1e-4
    resumed = CliRunner().invoke(
        main, [*args, "--train-seed", "5", "--resume", "-o", str(tmp_path / "other")]
    )
    assert resumed.exit_code == 1 and "cannot resume with different train_seed" in resumed.output
    assert "(saved run used --train-seed 4)" in resumed.output
    same = CliRunner().invoke(main, [*args, "--train-seed", "3", "--resume", "-o", str(tmp_path / "plain")])
    assert same.exit_code == 0 and "at step 4/4 already" in same.output


def test_a_damaged_state_is_one_line_and_a_lone_state_half_gets_one_advice(
    tmp_path, tiny_config, paired_dirs
):
    """A state.json edited by hand (a key deleted, settings a list) was a KeyError or
    AttributeError traceback; a state.safetensors without its JSON was 'pass --resume' without
    --resume, and 'no training state to resume' with it."""
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path), *FAST]
    assert CliRunner().invoke(main, [*args, "--stop-at", "2"]).exit_code == 0
    # Not damage, but said wrong: a --stop-at the run has passed read as a finished run, and a
    # resume took another --val-every (the steps best is chosen from) without a word.
    early = CliRunner().invoke(main, [*args, "--resume", "--stop-at", "1"])
    assert early.exit_code == 0
    assert f"the run in {tmp_path} is at step 2/4, at --stop-at 1 or past it; nothing to do" in early.output
    other = CliRunner().invoke(main, [*args, "--resume", "--val-every", "3"])
    assert other.exit_code == 1
    assert "cannot resume with different val_every (saved run used --val-every 2)" in other.output
    state = tmp_path / "state.json"
    meta = json.loads(state.read_text())
    assert (meta["settings"]["data"]["variants"], meta["settings"]["data"]["max_side"]) == (None, None)
    meta["settings"]["data"]["variants"] = 1  # as a --pairs run recorded --variants before they were refused
    state.write_text(json.dumps(meta))
    assert CliRunner().invoke(main, [*args, "--resume", "--stop-at", "1"]).exit_code == 0
    other = CliRunner().invoke(main, [*args, "--resume", "--max-val-images", "1"])
    assert "cannot resume with different max_val_images (saved run used no --max-val-images)" in other.output
    state = tmp_path / "state.json"
    good = json.loads(state.read_text())
    for damage, named in (
        ("param_groups", "param_groups"),
        ("best_psnr", "best_psnr"),
        ("settings", "settings"),
        ("seconds", "seconds"),  # these three were TypeError tracebacks, or a bad record saved again
        ("init_record", "init_record"),
        ("betas", "param_groups"),
    ):
        meta = json.loads(json.dumps(good))
        if damage == "settings":
            meta["settings"] = []
        elif damage in ("seconds", "init_record"):
            meta[damage] = [1] if damage == "seconds" else "zzz"
        elif damage == "betas":
            meta["param_groups"][0]["betas"] = 5
        else:
            del meta[damage]
        state.write_text(json.dumps(meta))
        resumed = CliRunner().invoke(main, [*args, "--resume"])
        assert resumed.exit_code == 1, resumed.output
        assert resumed.output.splitlines() == [
            f"bdinn-train: error: {state}: a damaged training state ({named} missing or of the wrong kind); "
            "start over with --force, or --init last.safetensors"
        ]
    state.unlink()
    fresh = CliRunner().invoke(main, args)
    assert fresh.exit_code == 1
    assert (
        "holds checkpoints (last.safetensors) but no training state to resume; pass --force" in fresh.output
    )


def test_force_resume_and_data_checks(tmp_path, tiny_config, paired_dirs):
    """--force leaves nothing of the old run to choose from; --resume wants the same pictures, and
    what needs no data is refused before the data is prepared."""
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path), *FAST]
    first = CliRunner().invoke(main, [*args, "--keep-checkpoints"])
    assert first.exit_code == 0, first.output
    assert {"best.json", "step-0000002.safetensors", "step-0000004.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    done = CliRunner().invoke(main, [*args, "--resume"])
    assert (
        done.exit_code == 0 and f"the run in {tmp_path} is at step 4/4 already; nothing to do" in done.output
    )
    both = CliRunner().invoke(main, [*args, "--resume", "--force"])
    assert (
        both.exit_code == 2 and "--resume continues the run in OUT and --force starts it over" in both.output
    )
    kept = (tmp_path / "last.safetensors").read_bytes()  # --force deleted the --init it trained from
    own = CliRunner().invoke(main, [*args, "--force", "--init", str(tmp_path / "last.safetensors")])
    assert (
        own.exit_code == 2
        and "is a checkpoint of the run in" in own.output
        and "which --force deletes" in own.output
    )
    assert (tmp_path / "last.safetensors").read_bytes() == kept
    fewer = tmp_path.parent / "fewer"
    for side in paired_dirs:  # the same layout, one picture less
        shutil.copytree(side, fewer / side.name, ignore=lambda _, names: sorted(names)[:1])
    other = CliRunner().invoke(
        main, [*args[:1], str(fewer / "banded"), str(fewer / "clean"), *args[3:], "--resume"]
    )
    assert other.exit_code == 1 and "cannot resume with different pictures" in other.output
    fewer_val = CliRunner().invoke(main, [*args, "--resume", "--max-val-images", "1"])
    assert fewer_val.exit_code == 1 and "cannot resume with different max_val_images" in fewer_val.output
    other_patches = CliRunner().invoke(main, [*args, "--resume", "--patch-size", "48", "--stride", "16"])
    assert "cannot resume with different data (saved run used --patch-size 32, --stride 32)" in (
        other_patches.output
    )
    for name in ("last", "state"):
        for path in tmp_path.glob(f"{name}.*"):
            path.rename(tmp_path.parent / f"{tmp_path.name}-{path.name}")
    left = CliRunner().invoke(main, args)  # best and step-N would have been overwritten and mixed in
    said = f"{tmp_path}: holds checkpoints (best.safetensors) but no training state to resume; pass --force"
    assert left.exit_code == 1 and said in left.output  # not --resume, which had no state to go on from
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 1 and "no training state to resume" in resumed.output
    assert "--force starts over" in resumed.output
    for path in tmp_path.parent.glob(f"{tmp_path.name}-*"):
        path.rename(tmp_path / path.name.removeprefix(f"{tmp_path.name}-"))
    kept = sorted(p.name for p in tmp_path.iterdir())
    refused = CliRunner().invoke(main, [*args, "--force", "--batch-size", "500"])  # more than there is
    assert refused.exit_code == 1 and "fewer than one batch of 500" in refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == kept  # --force deletes once the new run starts
    no_gpu = CliRunner().invoke(main, [*args, "--resume", "--device", "cuda"])
    assert no_gpu.exit_code == 1 and "data:" not in no_gpu.output  # refused before the data
    again = CliRunner().invoke(main, [*args, "--force", "--steps", "1", "--val-fraction", "0"])
    assert again.exit_code == 0, again.output
    assert "no validation pictures (--val-fraction 0): best.safetensors is not written" in again.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "last.json",
        "last.safetensors",
        "state.json",
        "state.safetensors",
    ]


def test_init_default_fine_tunes_the_bundled_model(tmp_path, paired_dirs):
    """`--init default` takes the bundled weights and their architecture; one tiny step stays close."""
    data = ["--pairs", *map(str, paired_dirs), "--patch-size", "32", "--stride", "32", "--device", "cpu"]
    schedule = ["--steps", "1", "--lr", "1e-7", "--warmup", "0"]
    result = CliRunner().invoke(main, [*data, *schedule, "--init", "default", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "last.json").read_text())
    assert meta["config_name"] == "lite" and meta["step"] == 1
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["settings"]["init"].endswith("default.safetensors")
    bundled = load_file(Path(state["settings"]["init"]))
    tuned = load_file(tmp_path / "last.safetensors")
    assert max(float((tuned[k] - bundled[k].float()).abs().max()) for k in bundled) < 1e-5


def test_init_default_may_turn_the_coarse_pass_on(tmp_path, paired_dirs):
    """The coarse pass adds no weights: `--config` may differ from the bundled model's there alone,
    and the run then trains and saves with the pass."""
    config = tmp_path / "coarse.json"
    config.write_text(json.dumps({**json.loads(DEFAULT_SIDECAR.read_text())["config"], "coarse_pass": True}))
    data = ["--pairs", *map(str, paired_dirs), "--patch-size", "32", "--stride", "32", "--device", "cpu"]
    schedule = ["--steps", "1", "--lr", "1e-7", "--warmup", "0"]
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, [*data, *schedule, "--init", "default", "--config", str(config), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "last.json").read_text())
    assert meta["config"]["coarse_pass"] is True and meta["config_name"] is None


DEFAULT_SIDECAR = Path(__file__).parents[1] / "runtime" / "models" / "default.json"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give training data"),
        (["--clean", str(DATA), "--config", "huge"], "Invalid value for --config: 'huge' is neither"),
        (
            ["--clean", str(DATA), "--config", str(DEFAULT_SIDECAR)],
            f"a checkpoint's sidecar, not a config (fine-tune it: --init {DEFAULT_SIDECAR.with_suffix('')}",
        ),
        (["--pairs", str(DATA), "/nonexistent"], "does not exist"),
        (["--clean", str(DATA), "--init", "/nonexistent.safetensors"], "no such checkpoint file"),
        (["--clean", str(DATA), "--init", "default", "--config", "paper"], "different architecture"),
        (  # was a ValueError naming the dataset's arguments, after the pairs were made
            ["--clean", str(DATA), "--unbanded-share", "0.6", "--identity-share", "0.4"],
            "--unbanded-share 0.6 and --identity-share 0.4 leave no patches with banding",
        ),
        # nan passed FloatRange: --grad-clip nan trained unclipped and recorded NaN, others failed
        # after the pairs were made; seeds numpy or torch refuse failed there too
        (
            ["--clean", str(DATA), "--grad-clip", "nan"],
            "Invalid value for '--grad-clip': 'nan' is not a finite",
        ),
        (["--clean", str(DATA), "--lr", "inf"], "Invalid value for '--lr': 'inf' is not a finite number"),
        (["--clean", str(DATA), "--identity-share", "nan"], "'nan' is not a finite number"),
        (["--clean", str(DATA), "--seed", "-1"], "Invalid value for '--seed': -1 is not in the range 0<=x<="),
        (["--clean", str(DATA), "--train-seed", str(10**14)], "Invalid value for '--train-seed'"),
        (  # were recorded as applied, and a resume with another --variants refused as other data
            ["--pairs", str(DATA), str(DATA), "--max-side", "64", "--variants", "1"],
            "--variants and --max-side shape the pairs made from --clean pictures",
        ),
    ],
)
def test_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output


def test_json_nested_thousands_deep_is_refused_in_one_line(tmp_path, tiny_config, paired_dirs):
    """A --config or state.json of 100,000 nested lists was a RecursionError traceback."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(
        main, ["--clean", str(DATA), "--config", str(deep), "-o", str(tmp_path / "a")]
    )
    assert result.exit_code == 2 and "deep.json: not a BDINN config (maximum recursion depth" in result.output
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path / "b"), *FAST]
    assert CliRunner().invoke(main, [*args, "--stop-at", "2"]).exit_code == 0
    (tmp_path / "b" / "state.json").write_text(deep.read_text())
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 1 and "state.json: not valid JSON (maximum recursion depth" in result.output


@pytest.mark.parametrize("when", ["training", "validating"])
def test_running_out_of_memory_is_one_line_saying_what_needs_less(
    tmp_path, tiny_config, paired_dirs, monkeypatch, when
):
    """A traceback before; and validation, on whole pictures, is not helped by a smaller batch."""
    import torch

    from bdinn.train.network import BDINN

    forward = BDINN.forward

    def short_of_memory(self, x):
        if self.training == (when == "training"):
            torch.empty(1 << 60, dtype=torch.uint8)
        return forward(self, x)

    monkeypatch.setattr(BDINN, "forward", short_of_memory)
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path), *FAST]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    advice = (
        "a smaller --batch-size" if when == "training" else "validation runs the network on whole held-out"
    )
    assert "bdinn-train: error: not enough memory (" in result.output and advice in result.output


def test_a_state_with_a_tensor_no_run_saves_is_refused_naming_it(tmp_path, tiny_config, paired_dirs):
    """An extra optimizer.x was 'not enough values to unpack', naming no file."""
    from safetensors.torch import load_file, save_file

    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path), *FAST]
    assert CliRunner().invoke(main, [*args, "--stop-at", "2"]).exit_code == 0
    tensors = load_file(tmp_path / "state.safetensors")
    extra = {"optimizer.x": tensors[next(iter(tensors))].clone()}
    save_file({**tensors, **extra}, tmp_path / "state.safetensors", metadata={"step": "2"})
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert (
        result.exit_code == 1
        and "state.safetensors: a tensor 'optimizer.x' no bdinn run saves" in result.output
    )
    tensors["optimizer.0.exp_avg"] = torch.zeros(1)  # was a RuntimeError traceback at the first step
    save_file(tensors, tmp_path / "state.safetensors", metadata={"step": "2"})
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 1 and "its optimiser state does not fit this run's network" in result.output


def test_a_cut_short_init_checkpoint_is_refused_before_the_pairs_are_made(tmp_path):
    """It was found only when the network was built, after minutes of encoding the pairs."""
    from bdinn.runtime.debander import default_model_path

    bundled = default_model_path("torch")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(bundled.read_bytes()[:50_000])
    cut.with_suffix(".json").write_bytes(bundled.with_suffix(".json").read_bytes())
    result = CliRunner().invoke(main, ["--clean", str(DATA), "--init", str(cut), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert f"{cut}: not a readable safetensors file (" in result.output
    assert not (tmp_path / "run" / "pairs").exists()


def test_an_init_checkpoint_with_diverged_weights_is_refused_before_the_pairs_are_made(tmp_path):
    """Its NaN weights were found at step 0, as a "non-finite loss" blamed on --lr or the data."""
    from safetensors.torch import load_file, save_file

    from bdinn.runtime.debander import default_model_path

    bundled = default_model_path("torch")
    tensors = load_file(bundled)
    name = sorted(tensors)[-1]
    tensors[name] = torch.full_like(tensors[name], float("inf"))
    diverged = tmp_path / "diverged.safetensors"
    save_file(tensors, diverged, metadata={"format": "bdinn-checkpoint/1"})
    diverged.with_suffix(".json").write_bytes(bundled.with_suffix(".json").read_bytes())
    result = CliRunner().invoke(
        main, ["--clean", str(DATA), "--init", str(diverged), "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert f"{diverged}: tensor {name} holds NaN or infinite values" in result.output
    assert not (tmp_path / "r" / "pairs").exists()


def test_a_clean_folder_of_no_readable_picture_says_only_that(tmp_path, tiny_config):
    """It warned first that all pairs came from one picture and printed a data line of zeros."""
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "fake.png").write_text("hello")
    args = ["--clean", str(tmp_path / "text"), "--config", str(tiny_config), "-o", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "no training picture could be read (each is named above)" in result.output
    assert "one picture" not in result.output and "data:" not in result.output


def test_bad_data_is_one_line_and_exit_1(tmp_path, tiny_config):
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    result = CliRunner().invoke(
        main,
        [
            "--pairs",
            str(tmp_path / "b"),
            str(tmp_path / "c"),
            "--config",
            str(tiny_config),
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1
    assert (
        result.output.strip().startswith("bdinn-train: error:")
        and "no image names in common" in result.output
    )
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # made for the run's lock, taken back with it


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path, tiny_config, paired_dirs):
    """DDP with gloo: 2 ranks x 2 patches give the same weights as 1 process x 4 patches."""
    common = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), *FAST, "--batch-size", "4",
              "--warmup", "500"]  # fmt: skip  # small steps: the ranks' float sums differ in the last bits
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "bdinn.train.cli", *common, "-o", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # a free port: a fixed one fails where two runs share a machine
            "--nproc_per_node",
            "2",
            "-m",
            "bdinn.train.cli",
            *common,
            "-o",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(tmp_path)},  # torchelastic leaves its folder in the temporary folder
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = load_file(tmp_path / "one" / "last.safetensors")
    two = load_file(tmp_path / "two" / "last.safetensors")
    assert max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5
    assert json.loads((tmp_path / "two" / "last.json").read_text())["step"] == 4


def test_a_picture_too_small_to_validate_on_is_skipped_up_front(tmp_path, tiny_config, paired_dirs):
    """A 7x5 picture that landed in the validation split ended the run at its first validation
    (SSIM's window is 11 px), after that many steps and before any state was saved; later it was
    skipped there, and left the run without validation. It is dropped before the split now."""
    banded, clean = (tmp_path / "banded", tmp_path / "clean")
    for source, target in ((paired_dirs[0], banded), (paired_dirs[1], clean)):
        shutil.copytree(source, target)
    tiny = np.full((5, 7, 3), 100, np.uint8)
    for side, value in ((banded, 96), (clean, 100)):
        Image.fromarray(np.full_like(tiny, value)).save(side / "tiny.png")
    args = ["--pairs", str(banded), str(clean), "--config", str(tiny_config), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(main, [*args, *FAST, "--val-fraction", "0.25", "--seed", "1"])  # tiny: val
    assert result.exit_code == 0, result.output
    assert (
        f"Warning: skipping pair tiny: {clean / 'tiny.png'}: 7x5 is smaller than the 16x16 bdinn works on"
        in (result.output)
    )
    assert "data: 2 training / 1 validation images" in result.output
    assert "no validation pictures" not in result.output
    assert "stopped at step 4/4" in result.output and (tmp_path / "o" / "best.safetensors").is_file()


def test_pictures_smaller_than_a_patch_are_said_not_trained_on(tmp_path, tiny_config, paired_dirs):
    """A 24x20 pair gives no 32-px patch: it was counted among the training images, unsaid."""
    banded, clean = _copied_pairs(paired_dirs, tmp_path)
    for index in range(8):  # most of the pairs: some land in training, whatever the split
        ramp = np.tile(np.linspace(40, 200 + index, 24).astype(np.uint8), (20, 1))[..., None].repeat(3, 2)
        for side, picture in ((banded, ramp // 8 * 8), (clean, ramp)):
            Image.fromarray(picture).save(side / f"small{index}.png")
    args = ["--pairs", str(banded), str(clean), "--config", str(tiny_config), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(main, [*args, *FAST])
    assert result.exit_code == 0, result.output
    said = re.search(
        r"data: (\d+) training .*, (\d+) training pairs under a 32-px patch \(unused\)", result.output
    )
    assert said, result.output
    trained, small = map(int, said.groups())
    assert 1 <= small <= 8 and 1 <= trained - small <= len(list(paired_dirs[1].iterdir()))  # the 3 large


def _copied_pairs(paired_dirs: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The paired folders copied, for a test to damage its pictures."""
    banded, clean = (tmp_path / "banded", tmp_path / "clean")
    for source, target in ((paired_dirs[0], banded), (paired_dirs[1], clean)):
        target.mkdir()
        for picture in source.iterdir():
            (target / picture.name).write_bytes(picture.read_bytes())
    return banded, clean


def test_a_skipped_picture_is_one_warning_line(tmp_path, tiny_config, paired_dirs):
    banded, clean = _copied_pairs(paired_dirs, tmp_path)
    cut = sorted(clean.iterdir())[-1]
    cut.write_bytes(cut.read_bytes()[:200])  # a truncated clean picture: its pair is skipped
    args = ["--pairs", str(banded), str(clean), "--config", str(tiny_config), "-o", str(tmp_path / "o")]
    args += FAST
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.output.splitlines() if "skipping pair" in line]
    assert warning.startswith(f"Warning: skipping pair {cut.stem}") and "truncated PNG" in warning
    assert "UserWarning" not in result.output
    # Counted as what was read: the data line and the record counted the skipped pair as used.
    said = re.search(r"data: (\d+) training / (\d+) validation", result.output)
    trained, validated = map(int, said.groups())
    assert trained + validated == len(list(clean.iterdir())) - 1
    origin = json.loads((tmp_path / "o" / "last.json").read_text())["training"]["data_origin"]
    assert (sum(origin["train"].values()), sum(origin["validation"].values())) == (trained, validated)
    # A run saved by the version that counted the skipped pair too still resumes with that data.
    state = json.loads((tmp_path / "o" / "state.json").read_text())
    split = split_by_source(large_enough(sorted(find_pairs(banded, clean), key=lambda p: p.name)), 0.2, 0)
    state["settings"]["sources"] = pairs_fingerprint(*split)
    (tmp_path / "o" / "state.json").write_text(json.dumps(state))
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0 and "at step 4/4 already; nothing to do" in resumed.output, resumed.output


def test_validation_pictures_all_unreadable_leave_a_run_without_best(tmp_path, tiny_config, paired_dirs):
    banded, clean = _copied_pairs(paired_dirs, tmp_path)
    _, held_out = split_by_source(
        large_enough(sorted(find_pairs(banded, clean), key=lambda p: p.name)), 0.2, 0
    )
    assert held_out
    for pair in held_out:  # whole headers (the split reads sizes), cut pixels: skipped when read
        pair.clean.write_bytes(pair.clean.read_bytes()[:200])
    args = ["--pairs", str(banded), str(clean), "--config", str(tiny_config), "-o", str(tmp_path / "o")]
    args += FAST
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "no validation pictures (every one was skipped, as said above)" in result.output
    assert (tmp_path / "o" / "last.safetensors").is_file() and not (
        tmp_path / "o" / "best.safetensors"
    ).exists()


def test_a_floor_above_the_peak_learning_rate_is_refused(tmp_path, tiny_config, paired_dirs):
    """--min-lr 1e-2 with --lr 1e-4: the cosine "decay" rose to 100 times the peak, silently."""
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path / "run")]
    result = CliRunner().invoke(main, [*args, *FAST, "--lr", "1e-4", "--min-lr", "1e-2"])
    assert (
        result.exit_code == 2
        and "--min-lr 0.01 is above --lr 0.0001, the peak it decays from" in result.output
    )
    assert not (tmp_path / "run").exists()
    defaulted = CliRunner().invoke(main, [*args, *FAST, "--lr", "1e-7"])  # the floor never given: said
    assert defaulted.exit_code == 0, defaulted.output
    assert (
        "Warning: --min-lr 1e-06 (the default) is above --lr 1e-07: the rate rises to it" in defaulted.output
    )


def test_option_warnings_are_said_by_the_main_process_only(tmp_path, paired_dirs):
    """Under torchrun every process printed the --warmup and --min-lr warnings."""
    args = [
        "--pairs",
        *map(str, paired_dirs),
        "--config",
        str(tmp_path / "missing.json"),
        "-o",
        str(tmp_path / "r"),
    ]
    args += [
        "--steps",
        "5",
        "--warmup",
        "10",
        "--lr",
        "1e-7",
    ]  # two warnings, then a config that is not there
    for rank, said in (("0", True), ("1", False)):
        result = CliRunner().invoke(main, args, env={"RANK": rank, "WORLD_SIZE": "2"})
        assert result.exit_code != 0 and "missing.json" in result.output, result.output
        assert ("Warning: --warmup 10 leaves --steps 5" in result.output) is said
        assert ("Warning: --min-lr 1e-06 (the default)" in result.output) is said


def test_a_second_run_into_one_out_at_once_is_refused(tmp_path, tiny_config, paired_dirs, monkeypatch):
    """Two runs started into one empty OUT both wrote their checkpoints there and both exited 0:
    one run was lost without a word. The lock is on OUT itself: a lock file in the user's cache
    missed a run with another XDG_CACHE_HOME (CI jobs have their own)."""
    import errno
    import fcntl

    out = tmp_path / "run"
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(out), *FAST]
    out.mkdir()
    running = os.open(out, os.O_RDONLY | os.O_DIRECTORY)  # the other run, as it holds OUT
    try:
        fcntl.flock(running, fcntl.LOCK_EX)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-cache"))
        refused = CliRunner().invoke(main, args)
    finally:
        os.close(running)
    assert refused.exit_code == 1 and f"{out}: another bdinn-train is writing its run there" in refused.output
    assert out.is_dir() and not any(out.iterdir())  # the other run's folder is left to it
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "step/s]" not in done.output and "%|" not in done.output  # no progress bar in a log
    assert not (tmp_path / "another-cache").exists()  # nothing of the lock piles up in a cache
    again = CliRunner().invoke(main, [*args, "--force"])  # the first run let go of it when it ended
    assert again.exit_code == 0, again.output

    def no_locks_here(*_):  # NFS without lockd
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks_here)
    unlocked = CliRunner().invoke(main, [*args, "--force"])  # a run as before, not a traceback
    assert unlocked.exit_code == 0, unlocked.output


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"RANK": "abc"}, "RANK='abc' is not a whole number (torchrun sets it; unset it for a plain run)"),
        (
            {"RANK": "1"},
            "RANK=1, WORLD_SIZE=1, LOCAL_RANK=0: each process's RANK is from 0 to WORLD_SIZE - 1",
        ),
    ],
)
def test_a_stray_torchrun_variable_is_one_line_naming_it(
    tmp_path, tiny_config, paired_dirs, monkeypatch, env, said
):
    """RANK=abc was "invalid literal for int()"; a stray RANK=1 made the only process a non-main one,
    which failed later saying every picture had been named above (none was)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ["--pairs", *map(str, paired_dirs), "--config", str(tiny_config), "-o", str(tmp_path), *FAST]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and said in result.output, result.output


def test_a_fine_tune_resumes_without_its_init_again(tmp_path, tiny_config, paired_dirs):
    """A run started with --init took that checkpoint's architecture; resumed without --init it
    was refused as another architecture (the default lite), and recorded init None after."""
    data = ["--pairs", *map(str, paired_dirs), *FAST]
    first = CliRunner().invoke(main, [*data, "--config", str(tiny_config), "-o", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    start = str(tmp_path / "a" / "last.safetensors")
    tune = ["--init", start, "-o", str(tmp_path / "b")]
    cut = CliRunner().invoke(main, [*data, *tune, "--stop-at", "3"])
    assert cut.exit_code == 0, cut.output
    cut_seconds = json.loads((tmp_path / "b" / "state.json").read_text())["seconds"]
    other = str(tmp_path / "a" / "best.safetensors")  # was taken, and recorded as the run's start
    refused = CliRunner().invoke(main, [*data, "--resume", "--init", other, "-o", str(tmp_path / "b")])
    assert refused.exit_code == 1
    assert f"this run started from {start}; resume it without --init" in refused.output
    spelled = str(tmp_path / "a" / ".." / "a" / "last.safetensors")  # the same file: taken
    again = CliRunner().invoke(
        main, [*data, "--resume", "--init", spelled, "--stop-at", "3", "-o", str(tmp_path / "b")]
    )
    assert again.exit_code == 0, again.output
    resumed = CliRunner().invoke(main, [*data, "--resume", "-o", str(tmp_path / "b")])
    assert resumed.exit_code == 0, resumed.output
    assert "stopped at step 4/4" in resumed.output
    assert json.loads((tmp_path / "b" / "state.json").read_text())["settings"]["init"] == start
    # The fine-tune records its start by digest, with the start's own record: the whole lineage.
    record = json.loads((tmp_path / "b" / "last.json").read_text())["training"]
    started = record["init"]
    assert started["path"] == start and started["step"] == 4
    assert started["sha256"] == hashlib.sha256(Path(start).read_bytes()).hexdigest()
    assert started["training"] == json.loads((tmp_path / "a" / "last.json").read_text())["training"]
    assert started["training"]["data_origin"]["pairs"] == [str(p) for p in paired_dirs]
    assert set(started["training"]["data_origin"]["train"]) == {"paired"}
    assert record["seconds"] > cut_seconds  # counted over the resumes, not from the last one


def test_a_batch_the_processes_cannot_share_is_refused_before_the_pairs_are_made(tmp_path, tiny_config):
    """Under torchrun with 2 processes, --batch-size 1 was refused only after minutes of making
    pairs; the ranks' settings come from torchrun's environment, which this sets by hand."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "bdinn.train.cli", "--clean", str(DATA), "--config", str(tiny_config), *FAST,
         "--batch-size", "1", "-o", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "bdinn-train: error: --batch-size 1 must be a multiple of the process count (2)"
    ]
    assert not (tmp_path / "run" / "pairs").exists()
