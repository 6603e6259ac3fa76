"""How a checkpoint was trained, recorded in its sidecar under "training": a model handed on to
another team (or bundled as the default) can then be retrained, compared or audited without the
run folder or the shell history that made it."""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path, PureWindowsPath
from typing import Any

import torch

from ..runtime.files import file_digest
from .checkpoint import CheckpointError, extra_records, read_checkpoint_meta
from .image_pair import ImagePair

# The settings that make the weights what they are (the run's own bookkeeping stays out).
RECIPE = (
    "steps", "batch_size", "lr", "min_lr", "warmup", "fft_weight", "grad_clip", "seed", "train_seed", "amp",
    "val_every", "max_val_images", "data", "sources",
)  # fmt: skip


def data_origin(
    clean_dirs: Iterable[Path],
    pairs_dirs: Iterable[Path],
    cache_dir: Path | None,
    train: Sequence[ImagePair],
    validation: Sequence[ImagePair],
) -> dict[str, Any]:
    """Where the pictures came from and how they were banded, counted per degradation family for
    each side of the split (pairs given ready-made have no family: 'paired')."""
    return {  # resolved, as the start's and a blend's paths are: the record outlives the working folder
        "clean": [str(Path(folder).resolve()) for folder in clean_dirs],
        "pairs": [str(Path(folder).resolve()) for folder in pairs_dirs],
        "cache": None if cache_dir is None else str(Path(cache_dir).resolve()),
        "train": _families(train),
        "validation": _families(validation),
    }


def _families(pairs: Sequence[ImagePair]) -> dict[str, int]:
    counts = Counter(pair.family or "paired" for pair in pairs)
    return dict(sorted(counts.items()))


def checkpoint_record(path: Path) -> dict[str, Any]:
    """A checkpoint a model was made from (a fine-tune's start, a blend's ends): its digest, step
    and own training record, so a chain of fine-tunes and blends keeps its whole history (a file
    gone since, on a resume of a run that predates this record, leaves only its path)."""
    try:
        meta, digest = read_checkpoint_meta(path), file_digest(path)
    except (CheckpointError, OSError):
        meta, digest = {}, None
    # with what else its sidecar carries beyond its own fields: a blend's ends, a bundle's source
    return {
        "path": str(Path(path).resolve()),
        "sha256": digest,
        "step": meta.get("step"),
        "training": None,
        **extra_records(meta),
    }


def shareable(records: Any) -> Any:
    """`records` with every file and folder cut to its name, for a model bundled with bdinn: its
    users cannot reach the maintainer's folders, whose paths may name a person or a machine (the
    digests still identify each file)."""
    if isinstance(records, Mapping):
        return {key: _shareable_entry(key, value) for key, value in records.items()}
    if isinstance(records, list):
        return [shareable(value) for value in records]
    return records


def _shareable_entry(key: str, value: Any) -> Any:
    if key == "path" and isinstance(value, str):
        return _name(value)
    if key == "data_origin" and isinstance(value, Mapping):
        lists = [side for side in ("clean", "pairs") if isinstance(value.get(side), list)]
        folders = {side: [_name(folder) for folder in value[side]] for side in lists}
        cache = {"cache": _name(value["cache"])} if isinstance(value.get("cache"), str) else {}
        return {**value, **folders, **cache}
    return shareable(value)


def _name(path: str) -> str:
    """The last part, after a / or a \\ (a bundle made on Linux of a run made on Windows)."""
    return PureWindowsPath(path).name or path  # "." or "/" name no one


def hardware(device: torch.device, processes: int) -> dict[str, Any]:
    """What the run ran on: the GPU's name, or the CPU's threads (step times depend on both)."""
    where = {"device": str(device), "processes": processes, "machine": platform.machine()}
    if device.type == "cuda":
        where["gpu"] = torch.cuda.get_device_name(device)
    else:
        where.update({"cpu_count": os.cpu_count(), "threads": torch.get_num_threads()})
    return where


def training_record(
    settings: Any, *, init: Mapping[str, Any] | None, where: Mapping[str, Any], seconds: float | None
) -> dict[str, Any]:
    """The sidecar's "training" entry: the recipe, the data, the start, the hardware and the time
    (wall seconds of training and validation over every resume, pair preparation excluded; None
    for a run resumed from a state saved before bdinn counted them, rather than a part of it)."""
    fields = asdict(settings)
    return {
        **{key: fields[key] for key in RECIPE},
        "data_origin": fields.get("data_origin") or None,
        "init": None if init is None else dict(init),
        "hardware": dict(where),
        "seconds": None if seconds is None else round(seconds, 1),
        "versions": {"bdinn": _version("bdinn"), "torch": torch.__version__},
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:  # run from a source tree
        return None
