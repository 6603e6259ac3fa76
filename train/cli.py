"""`bdinn-train`: train BDINN from paired folders or from clean images made banded on the fly."""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any

import click
import torch.distributed as dist

from ..runtime.backends import BackendError
from ..runtime.cli_options import (
    BdinnCommand,
    FiniteFloatRange,
    one_line_warnings,
    out_of_memory,
    stops_cleanly,
)
from ..runtime.debander import default_model_path
from ..runtime.files import check_writable, missing_folders, remove_empty, resolved
from ..runtime.imageio import ImageError
from ..runtime.pyav import MissingPackage
from .checkpoint import CheckpointError, check_finite, check_weights, read_checkpoint_config
from .clean_sources import one_source_per_picture
from .data import (
    FullImageDataset,
    PatchDataset,
    holding_every_family,
    large_enough,
    split_by_source,
    stratified_order,
)
from .image_pair import ImagePair, find_pairs
from .network import CONFIGS, BDINNConfig
from .pairs_cache import cache_preparation, pairs_from_cache, prepare_synthetic_pairs
from .provenance import data_origin
from .trainer import (
    NO_PICTURE,
    SEED_MAX,
    Distributed,
    Trainer,
    TrainingError,
    TrainSettings,
    check_before_data,
    pairs_fingerprint,
    read_state,
    resolve_device,
    sample_fingerprint,
)

SHARE = FiniteFloatRange(0, 1, max_open=True)  # a fraction of a set, never all of it


def resolve_config(value: str) -> tuple[BDINNConfig, str | None]:
    """A named configuration (lite, paper) or a JSON file holding a BDINNConfig."""
    if value in CONFIGS:
        return CONFIGS[value], value
    path = Path(value)
    if not path.is_file():
        raise click.BadParameter(
            f"{value!r} is neither a configuration ({', '.join(CONFIGS)}) nor a JSON file",
            param_hint="--config",
        )
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "config" in data and "format" in data:  # a checkpoint's sidecar
            weights = path.with_suffix(".safetensors")
            raise ValueError(f"this is a checkpoint's sidecar, not a config (fine-tune it: --init {weights})")
        return BDINNConfig.from_dict(data), None
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise click.BadParameter(f"{path}: not a BDINN config ({exc})", param_hint="--config") from None


def resolve_init(value: str, config: BDINNConfig, *, explicit: bool) -> tuple[str, BDINNConfig, str | None]:
    """The checkpoint to fine-tune from, and the architecture it fixes for the run: its own, or
    the --config given, which may differ from it only where the weights do not (the coarse pass)."""
    try:
        path = default_model_path("torch") if value == "default" else Path(value)
        own, meta = read_checkpoint_config(path)
        check_weights(path, own)  # now: a cut-short file was found after minutes of data preparation
        check_finite(path)
    except (CheckpointError, BackendError) as exc:
        raise click.BadParameter(str(exc), param_hint="--init") from None
    if explicit and not config.same_weights(own):
        raise click.BadParameter(
            f"{path} holds a different architecture; drop --config to fine-tune it", param_hint="--init"
        )
    chosen = config if explicit else own
    return str(path), chosen, meta.get("config_name") if chosen == own else None


@click.command("bdinn-train", cls=BdinnCommand)
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run folder: last/best checkpoints and the resumable training state.",
)
@click.option(
    "--clean",
    "clean_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of clean images; banded inputs are synthesised from them (repeatable).",
)
@click.option(
    "--pairs",
    nargs=2,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="BANDED_DIR CLEAN_DIR",
    help="Paired folders matched by file name (Deep Image Debanding layout).",
)
@click.option(
    "--config", "config_value", default="lite", help="lite, paper, or a JSON file of BDINNConfig fields."
)
@click.option("--steps", default=20000, type=click.IntRange(min=1), help="Optimiser steps in all.")
@click.option(
    "--batch-size",
    default=4,
    type=click.IntRange(min=1),
    help="Patches per step, across all processes under torchrun (a multiple of their count).",
)
@click.option(
    "--lr",
    default=2e-4,
    type=FiniteFloatRange(min=0, min_open=True),
    help="Peak learning rate (Adam), reached after the warm-up.",
)
@click.option(
    "--min-lr", default=1e-6, type=FiniteFloatRange(min=0), help="Learning rate the cosine decay ends at."
)
@click.option("--warmup", default=500, type=click.IntRange(min=0), help="Linear learning-rate warm-up steps.")
@click.option(
    "--fft-weight",
    default=0.1,
    type=FiniteFloatRange(min=0),
    help="Weight of the FFT L1 term (the paper's 0.1). The FFT is unnormalised, so the term's pull "
    "against L1 grows with --patch-size; 0 fine-tuned better on 256-px patches (model card).",
)
@click.option("--grad-clip", default=1.0, type=FiniteFloatRange(min=0), help="Max gradient norm; 0 disables.")
@click.option("--patch-size", default=256, type=click.IntRange(min=16), help="Training patch side, pixels.")
@click.option("--stride", default=128, type=click.IntRange(min=1), help="Step between patches, pixels.")
@click.option("--augment/--no-augment", default=True, help="Random flips and quarter turns of patches.")
@click.option(
    "--unbanded-share",
    type=SHARE,
    default=0.0,
    help="Share of training patches drawn from those without banding (the paper uses none).",
)
@click.option(
    "--identity-share",
    type=SHARE,
    default=0.0,
    help="Share of training patches that are clean patches as their own input, so that the model "
    "learns to keep the grain and detail it is given.",
)
@click.option(
    "--val-fraction",
    type=SHARE,
    default=0.2,
    help="Share of source pictures held out for validation (split by picture, never by patch).",
)
@click.option(
    "--val-every", default=500, type=click.IntRange(min=1), help="Validate and checkpoint every N steps."
)
@click.option(
    "--max-val-images", default=None, type=click.IntRange(min=1), help="Cap on full validation images."
)
@click.option(
    "--variants", default=3, type=click.IntRange(min=1), help="Synthetic banded variants per clean image."
)
@click.option(
    "--max-side", default=1920, type=click.IntRange(min=64), help="Downscale clean images to this long side."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where synthetic pairs are cached [default: OUT/pairs]. Without --clean: train on the pairs "
    "of a cache copied from another machine (banded pictures left behind are remade): those of its "
    "latest preparation, or of the latest with the --seed, --variants or --max-side given.",
)
@click.option(
    "--seed",
    default=0,
    type=click.IntRange(0, SEED_MAX),
    help="Seed of the synthetic pairs, the split and (without --train-seed) the training.",
)
@click.option(
    "--train-seed",
    default=None,
    type=click.IntRange(0, SEED_MAX),
    help="Seed of the initial weights, patch order, augmentation and shares alone [default: --seed]: "
    "repeats a run on the same pairs and split, to tell a change from seed noise.",
)
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--amp", is_flag=True, help="bfloat16 mixed precision (CUDA only).")
@click.option(
    "--init",
    "init_from",
    default=None,
    metavar="CHECKPOINT",
    help="Fine-tune: start from these weights ('default': the bundled model) with a fresh optimiser "
    "and schedule; the architecture is the checkpoint's.",
)
@click.option("--resume", is_flag=True, help="Continue the run in OUT exactly where it stopped.")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Start a new run in an OUT that holds one (its checkpoints and state are deleted once the new "
    "run has passed its checks).",
)
@click.option(
    "--keep-checkpoints",
    is_flag=True,
    help="Keep OUT/step-NNNNNNN.safetensors at every validation, to choose by CAMBI as well as PSNR.",
)
@click.option(
    "--stop-at",
    default=None,
    type=click.IntRange(min=1),
    help="Stop after this step, saving a resumable state (e.g. to fit a time slot).",
)
@stops_cleanly
@one_line_warnings()
def main(
    out_dir: Path,
    clean_dirs: tuple[Path, ...],
    pairs: tuple[Path, Path] | None,
    config_value: str,
    patch_size: int,
    stride: int,
    augment: bool,
    unbanded_share: float,
    identity_share: float,
    val_fraction: float,
    variants: int,
    max_side: int,
    cache_dir: Path | None,
    init_from: str | None,
    resume: bool,
    force: bool,
    stop_at: int | None,
    **train_options: object,  # the TrainSettings fields, by the same names
) -> None:
    """Train BDINN; run under `torchrun --nproc_per_node N` for several GPUs (or CPU processes)."""
    if _another_rank():  # the main process says each warning once (every process said the option ones)
        warnings.simplefilter("ignore")
    rates = (float(train_options["lr"]), float(train_options["min_lr"]))  # type: ignore[arg-type]
    _check_options(resume, force, unbanded_share, identity_share, clean_dirs, pairs, cache_dir, rates)
    _hold_the_run(out_dir)
    _refuse_an_earlier_run(out_dir, resume, force)
    warmup, steps = train_options["warmup"], train_options["steps"]
    if warmup and warmup >= steps - 1:  # type: ignore[operator]  # the last step after it is at the peak
        warnings.warn(
            f"--warmup {warmup} leaves --steps {steps} no step to decay in: the learning rate only rises "
            "and never decays (a short fine-tune wants a short --warmup)",
            stacklevel=1,
        )
    if cache_dir is not None and not clean_dirs:  # a cache alone: the run is its preparation's
        given = {"seed": train_options["seed"], "variants": variants, "max_side": max_side}
        made = _cache_preparation(cache_dir, out_dir, resume, given)
        if made is not None:
            train_options["seed"], variants, max_side = made["seed"], made["variants"], made["max_side"]
    if train_options["train_seed"] is None:  # recorded as used: spelling it out later is the same run
        train_options["train_seed"] = train_options["seed"]
    config, config_name = resolve_config(config_value)
    init_path = None
    explicit = _on_command_line("config_value")
    if init_from is not None:
        init_path, config, config_name = resolve_init(init_from, config, explicit=explicit)
        if force and resolved(init_path) in {resolved(path) for path in _cleared(out_dir)}:
            raise click.UsageError(
                f"--init {init_from}: is a checkpoint of the run in {out_dir}, which --force deletes; copy "
                "it out of that folder first, or choose another -o"
            )
    elif resume and not explicit and (saved := saved_architecture(out_dir)) is not None:
        config, config_name, init_path = saved  # a fine-tune resumes without its --init again
    if not clean_dirs and cache_dir is None:  # --pairs alone: no pictures are made, at any size
        variants = max_side = None  # type: ignore[assignment]
    data = {"patch_size": patch_size, "stride": stride, "augment": augment, "unbanded_share": unbanded_share,
            "identity_share": identity_share, "val_fraction": val_fraction, "variants": variants,
            "max_side": max_side}  # fmt: skip
    settings = TrainSettings(
        config=config.to_dict(), config_name=config_name, init=init_path, data=data, **train_options
    )
    seed, device = settings.seed, settings.device
    trainer = None
    try:
        check_writable(out_dir / "last.safetensors")  # now, not at the first checkpoint
        check_before_data(settings, out_dir, resume)
        ranks = Distributed.from_env()
        if ranks.world > 1:
            backend = "nccl" if resolve_device(device, ranks.local_rank).type == "cuda" else "gloo"
            dist.init_process_group(backend)
        image_pairs = _image_pairs(clean_dirs, pairs, cache_dir, out_dir, ranks, seed, variants, max_side)
        usable = large_enough(image_pairs)
        if not usable:  # before the validation warning and the data line, which counted none
            raise TrainingError(NO_PICTURE)
        train_pairs, val_pairs = split_by_source(usable, val_fraction, seed)
        if not val_pairs and ranks.main:
            reason = "--val-fraction 0" if val_fraction == 0 else "all pairs come from one picture"
            warnings.warn(
                f"no validation pictures ({reason}): best.safetensors is not written, only last", stacklevel=1
            )
        train_set = PatchDataset(
            train_pairs,
            patch_size=patch_size,
            stride=stride,
            augment=augment,
            seed=settings.training_seed,
            unbanded_share=unbanded_share,
            identity_share=identity_share,
        )
        sample, val_set = _validation_sample(val_pairs, settings.max_val_images, ranks.main)
        unreadable = set(sample) - set(val_set.pairs)
        held_out, val_pairs = val_pairs, [pair for pair in val_pairs if pair not in unreadable]  # read ones
        settings.sources = pairs_fingerprint(train_set.pairs, val_pairs)
        settings.pixels = f"{train_set.pixels}:{val_set.pixels}"
        settings.val_sample = sample_fingerprint(sample)
        if resume and ranks.main and len(sample) < len(held_out):
            _warn_of_an_unrecorded_sample(out_dir)
        if resume and train_set.skipped_images + val_set.skipped_images:  # a run saved before bdinn
            counted = pairs_fingerprint(train_pairs, held_out)  # counted only the pairs it read
            if _saved_settings(out_dir).get("sources") == counted:
                settings.sources = counted
        cache = cache_dir or (out_dir / "pairs" if clean_dirs else None)
        settings.data_origin = data_origin(clean_dirs, pairs or (), cache, train_set.pairs, val_pairs)
        if ranks.main:
            _report_data(train_set, val_set, len(val_pairs), unbanded_share, identity_share)
        trainer = Trainer(settings, train_set, val_set, out_dir, resume=resume)
        if force and ranks.main:  # once the new run has passed its checks: a refused one deletes nothing
            clear_run(out_dir)
        metrics = trainer.run(stop_at=stop_at)
    except (TrainingError, CheckpointError, ImageError, ValueError, OSError, MissingPackage) as exc:
        raise click.ClickException(str(exc)) from None  # MissingPackage: codec degradations without PyAV
    except MemoryError as exc:
        if trainer is not None and trainer.validating:
            raise out_of_memory(
                exc, "validation runs the network on whole held-out pictures: smaller ones need less "
                "(--max-side with --clean), or none with --val-fraction 0"
            ) from None  # fmt: skip
        raise out_of_memory(exc, "a smaller --batch-size or --patch-size needs less") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if ranks.main:
        _report_end(trainer, metrics, out_dir, stop_at)


def _validation_sample(
    val_pairs: list[ImagePair], max_val_images: int | None, main: bool
) -> tuple[list[ImagePair], FullImageDataset]:
    """The held-out pairs validation scores (every family in proportion, the small ones last), and
    the dataset of those that could be read; the main process warns of what validation misses."""
    order = stratified_order(val_pairs)
    sample = order[:max_val_images]
    left_out = sorted({p.family for p in val_pairs} - {p.family for p in sample})
    if left_out and main:  # best is chosen without seeing them
        warnings.warn(
            f"--max-val-images {max_val_images} holds no {', '.join(left_out)} picture: validation does "
            f"not score that banding; {holding_every_family(order)} would score every kind",
            stacklevel=1,
        )
    val_set = FullImageDataset(sample)
    if sample and not len(val_set) and main:
        warnings.warn(
            "no validation pictures (every one was skipped, as said above): best.safetensors is not "
            "written, only last",
            stacklevel=1,
        )
    return sample, val_set


def _image_pairs(
    clean_dirs: tuple[Path, ...],
    pairs: tuple[Path, Path] | None,
    cache_dir: Path | None,
    out_dir: Path,
    ranks: Distributed,
    seed: int,
    variants: int,
    max_side: int,
) -> list[ImagePair]:
    """Every pair the run splits: --pairs as found, and the synthetic pairs made from --clean (or
    the preparation chosen in a cache), in an order that does not depend on the file system."""
    image_pairs = list(find_pairs(*pairs)) if pairs else []
    if image_pairs:
        image_pairs = one_source_per_picture(image_pairs, clean_dirs, cache_dir or out_dir / "pairs")
    if clean_dirs or cache_dir is not None:
        # One process prepares (and caches) the synthetic pairs; the others then read the cache.
        def prepare() -> list[ImagePair]:
            if not clean_dirs:  # the preparation _cache_preparation chose: the latest with these settings
                return pairs_from_cache(cache_dir, seed=seed, variants=variants, max_side=max_side)
            return prepare_synthetic_pairs(
                list(clean_dirs), cache_dir or out_dir / "pairs", variants, seed, max_side
            )

        synthetic = prepare() if ranks.main else []
        if ranks.world > 1:
            dist.barrier()
            if not ranks.main:
                synthetic = prepare()
        image_pairs += synthetic
    # By name: a cache copied to another machine lists its pairs in another order than the
    # run that made them, and the patch order must not depend on that.
    image_pairs.sort(key=lambda pair: (pair.name, str(pair.banded)))
    return image_pairs


def _report_data(
    train_set: PatchDataset,
    val_set: FullImageDataset,
    held_out: int,
    unbanded_share: float,
    identity_share: float,
) -> None:
    """The data line (pictures, patches with banding, the shares drawn), and a warning for a share
    the set holds too few patches for."""
    extras = (
        (train_set.patches_unbanded, "without banding"),
        (train_set.patches_identity, "clean as their own input"),
        (train_set.skipped_images + val_set.skipped_images, "pairs skipped (unreadable)"),
        (train_set.smaller_than_patch, f"training pairs under a {train_set.patch_size}-px patch (unused)"),
    )
    shares = (
        ("unbanded", "--unbanded-share", unbanded_share, train_set.patches_unbanded),
        ("identity", "--identity-share", identity_share, train_set.patches_identity),
    )
    for kind, option, share, got in shares:
        if got < train_set.patches_asked[kind]:  # the set holds less of them than asked
            warnings.warn(
                f"{option} {share}: only {got} such patches to draw of the "
                f"{train_set.patches_asked[kind]} asked for ({got / len(train_set):.1%} of the set)",
                stacklevel=1,
            )
    scored = f" ({len(val_set)} scored)" if len(val_set) < held_out else ""
    click.echo(
        f"data: {len(train_set.pairs)} training / {held_out} validation images{scored}, "
        f"{train_set.patches_banded} of {train_set.patches_total} patches show banding"
        + "".join(f", {count} {what}" for count, what in extras if count)
    )


def _report_end(trainer: Trainer, metrics: dict[str, float], out_dir: Path, stop_at: int | None) -> None:
    """Where the run stopped and its last scores, or that there was nothing to do."""
    if not metrics:
        at = f"the run in {out_dir} is at step {trainer.step}/{trainer.settings.steps}"
        if trainer.step < trainer.settings.steps:  # not finished: --stop-at stopped it here
            click.echo(f"{at}, at --stop-at {stop_at} or past it; nothing to do (a later --stop-at, or none, "
                       "goes on)")  # fmt: skip
        else:
            click.echo(f"{at} already; nothing to do")
    else:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)
        written = (out_dir / "last.safetensors").exists()
        kept = "checkpoints" if written else "training state (no checkpoint yet)"
        click.echo(f"stopped at step {trainer.step}/{trainer.settings.steps}: {summary}; {kept} in {out_dir}")


def _check_options(
    resume: bool,
    force: bool,
    unbanded_share: float,
    identity_share: float,
    clean_dirs: tuple[Path, ...],
    pairs: tuple[Path, Path] | None,
    cache_dir: Path | None,
    rates: tuple[float, float],
) -> None:
    """Usage errors among the options, before anything is read or made."""
    if rates[1] > rates[0]:  # the cosine "decay" rose to 100 times the peak and broke the network
        if _on_command_line("min_lr"):
            raise click.UsageError(
                f"--min-lr {rates[1]:g} is above --lr {rates[0]:g}, the peak it decays from"
            )
        warnings.warn(
            f"--min-lr {rates[1]:g} (the default) is above --lr {rates[0]:g}: the rate rises to it "
            "instead of decaying; pass --min-lr at or below --lr",
            stacklevel=2,
        )
    if resume and force:
        raise click.UsageError("--resume continues the run in OUT and --force starts it over: pass one")
    if unbanded_share + identity_share >= 1:  # now, not after the pairs are made
        raise click.UsageError(
            f"--unbanded-share {unbanded_share} and --identity-share {identity_share} leave no patches "
            "with banding: together they must stay below 1"
        )
    if not clean_dirs and not pairs and cache_dir is None:
        raise click.UsageError(
            "give training data: --clean DIR (repeatable) and/or --pairs BANDED_DIR CLEAN_DIR, "
            "or --cache-dir DIR of synthetic pairs made earlier"
        )
    made_here = [f"--{name.replace('_', '-')}" for name in ("variants", "max_side") if _on_command_line(name)]
    if made_here and not clean_dirs and cache_dir is None:  # --pairs alone: used as they are
        raise click.UsageError(
            f"{' and '.join(made_here)} {'shapes' if len(made_here) == 1 else 'shape'} the pairs made from "
            "--clean pictures (or a --cache-dir of them); --pairs are used as they are: leave it out"
        )


def _refuse_an_earlier_run(out_dir: Path, resume: bool, force: bool) -> None:
    """OUT holding a run is refused unless it is resumed or started over (--force)."""
    earlier = [  # any checkpoint: a new run would overwrite some and leave the others beside its own
        path
        for pattern in ("last.safetensors", "state.safetensors", "best.safetensors", "step-*.safetensors")
        for path in sorted(out_dir.glob(pattern))
    ]
    if earlier and not (resume or force):
        state = (out_dir / "state.safetensors", out_dir / "state.json")
        if not all(path.is_file() for path in state):  # its save failed (a full disk): no resume
            raise click.ClickException(
                f"{out_dir}: holds checkpoints ({earlier[0].name}) but no training state to resume; pass "
                f"--force to start over, --init {out_dir / 'last.safetensors'} to go on from its weights in "
                "another -o, or choose another -o"
            )
        raise click.ClickException(
            f"{out_dir}: holds a run already ({earlier[0].name}); pass --resume to continue it, --force to "
            "start over, or choose another -o"
        )


def _cache_preparation(
    cache_dir: Path, out_dir: Path, resume: bool, given: dict[str, int]
) -> dict[str, int] | None:
    """The settings of the cache's preparation a run from it alone trains on: the latest made
    with the settings given on the command line; a resume's own, saved, where none is given (the
    latest may have changed since). None for a cache that records no preparations."""
    saved = _saved_settings(out_dir) if resume else {}
    data = saved.get("data") if isinstance(saved.get("data"), dict) else {}
    was = {"seed": saved.get("seed"), "variants": data.get("variants"), "max_side": data.get("max_side")}
    wanted = {
        name: value if _on_command_line(name) else was[name]
        for name, value in given.items()
        if _on_command_line(name) or was[name] is not None
    }
    try:
        return cache_preparation(cache_dir, **wanted)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _on_command_line(parameter: str) -> bool:
    """Whether the user gave this option, rather than click its default."""
    source = click.get_current_context().get_parameter_source(parameter)
    return source == click.core.ParameterSource.COMMANDLINE


def saved_architecture(out_dir: Path) -> tuple[BDINNConfig, str | None, str | None] | None:
    """The architecture (config, its name) and --init of the run saved in out_dir, if readable;
    the resume checks the rest."""
    saved = _saved_settings(out_dir)
    try:
        return BDINNConfig.from_dict(saved["config"]), saved.get("config_name"), saved.get("init")
    except (KeyError, TypeError, ValueError):
        return None


def _another_rank() -> bool:
    """Whether this is one of torchrun's processes other than the main one (RANK set, not 0)."""
    return os.environ.get("RANK", "").strip() not in ("", "0")


def _hold_the_run(out_dir: Path) -> None:
    """Two runs started into one OUT at once both found it empty, both wrote their checkpoints
    there and both said so: one was lost without a word. The main process holds a lock on the OUT
    folder itself until the command ends (a lock file in the user's cache missed a run with another
    XDG_CACHE_HOME, as CI jobs have); another run on this machine finds it held (NFS keeps a
    folder's lock to its client). OUT is made for it, and taken back if the run leaves it empty
    (refused). Without file locks (NFS without lockd) there is no lock."""
    if _another_rank():
        return  # the main process holds it
    made = missing_folders(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # check_writable says why, in one line
    held = _lock_folder(out_dir)
    if held == _HELD_ELSEWHERE:  # the folder is that run's, even where this one made it
        raise click.ClickException(
            f"{out_dir}: another bdinn-train is writing its run there; wait for it to end, or choose "
            "another -o"
        )

    def let_go() -> None:  # taken back while still held: no other run is in it yet
        remove_empty(made)
        if held is not None:
            os.close(held)

    click.get_current_context().call_on_close(let_go)


_HELD_ELSEWHERE = -1


def _lock_folder(folder: Path) -> int | None:
    """An open descriptor of `folder` holding its lock; _HELD_ELSEWHERE where another process holds
    it; None where this file system has no locks (NFS without lockd: a run as before)."""
    for _ in range(100):  # bounded: a folder removed and made again at every try would retry forever
        try:
            held = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(held)
            return _HELD_ELSEWHERE
        except OSError:
            os.close(held)
            return None
        if _is_folder_of(held, folder):
            return held
        os.close(held)  # a run that made it took it back as it ended: lock the one there now
    return None


def _is_folder_of(held: int, path: Path) -> bool:
    """Whether the open folder `held` is the one at `path` still (not one removed meanwhile)."""
    try:
        return os.path.samestat(os.fstat(held), path.stat())
    except OSError:
        return False


def _warn_of_an_unrecorded_sample(out_dir: Path) -> None:
    """A state saved before the validation sample was recorded cannot tell whether this resume
    scores the same pictures: the order they are taken in has changed since."""
    saved = _saved_settings(out_dir)
    if saved and "val_sample" not in saved:
        warnings.warn(
            f"{out_dir}: this run's state does not say which pictures its validation scored; bdinn now "
            "scores a picture not yet scored before a second pair of one, so its best so far may have "
            "been chosen on other pictures than the steps from here",
            stacklevel=2,
        )


def _saved_settings(out_dir: Path) -> dict[str, Any]:
    """The settings of the run saved in out_dir; {} where there is none, or none readable."""
    try:
        return read_state(out_dir / "state.json")["settings"]
    except TrainingError:  # a resume says what is wrong with it
        return {}


def _cleared(out_dir: Path) -> list[Path]:
    """The files --force deletes: the old run's checkpoints (best, step-N), not to be chosen from."""
    patterns = ("last.*", "best.*", "state.*", "step-*.safetensors", "step-*.json")
    return [
        path
        for pattern in patterns
        for path in out_dir.glob(pattern)
        if path.suffix in (".safetensors", ".json")
    ]


def clear_run(out_dir: Path) -> None:
    """--force: a new run starts in an OUT without the old one's checkpoints."""
    for path in _cleared(out_dir):
        path.unlink()


if __name__ == "__main__":
    main()
