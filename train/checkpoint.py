"""Checkpoints: weights as safetensors plus a JSON sidecar; nothing is ever unpickled.

A checkpoint `NAME.safetensors` always travels with `NAME.json`, which says what the weights
are (format tag, architecture config, configuration name, training step, metrics). Writes are
atomic: a crash leaves the previous checkpoint intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..runtime.backends import PICKLED_SUFFIXES
from ..runtime.files import WrittenFile, atomic_write, atomic_write_text
from .network import BDINN, CONFIGS, BDINNConfig

# Checkpoint configs and training states are a few KB; JSON of a gigabyte took gigabytes to read.
MAX_RECORD_BYTES = 16 << 20

FORMAT = "bdinn-checkpoint/1"
STATE_FORMAT = "bdinn-train-state/1"  # a run's resumable state (state.safetensors), not a model
_DTYPES = {"float32", "float16", "bfloat16"}  # what save_checkpoint stores weights as
_STORED_DTYPES = {"F32", "F16", "BF16"}  # the same, as safetensors headers name them
# What save_checkpoint writes itself; anything else in a sidecar came in as `extra`.
OWN_FIELDS = frozenset({"format", "architecture", "config", "config_name", "step", "metrics", "dtype"})


class CheckpointError(ValueError):
    """A file that is not a usable bdinn checkpoint; the message is one line for the user."""


def checkpoint_sidecar(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def write_json(path: Path, data: Mapping[str, Any], *, replace: bool = True) -> WrittenFile:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write_text(path, text, replace=replace)


def write_tensors(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    *,
    replace: bool = True,
) -> WrittenFile:
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        mode = os.stat(tmp).st_mode
        try:
            save_file(contiguous, tmp, metadata=metadata)
        except SafetensorError as exc:  # not an OSError: a full disk would be a traceback
            code = re.search(r"os error (\d+)", str(exc))
            if code is None:
                raise
            number = int(code.group(1))
            raise OSError(number, os.strerror(number), tmp) from exc
        os.chmod(tmp, mode)  # safetensors recreates the file as 0600; keep the usual permissions

    return atomic_write(path, write, replace=replace)


def save_checkpoint(
    path: Path,
    model: BDINN,
    *,
    config_name: str | None,
    step: int,
    metrics: Mapping[str, float] | None = None,
    dtype: torch.dtype = torch.float32,
    extra: Mapping[str, Any] | None = None,
    replace: bool = True,
) -> Path:
    """Write NAME.safetensors and NAME.json; returns the weights path.

    Without `replace`, a file that another job wrote at either name meanwhile is kept and this is
    an OutputError, taking back the weights it wrote: no weights stand beside another's sidecar.
    (With it, as a training run saves, new weights stay even where their sidecar fails.)
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoint weights must end in .safetensors")
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    weights = write_tensors(path, state, metadata={"format": FORMAT}, replace=replace)
    meta = {
        "format": FORMAT,
        "architecture": "BDINN",
        "config": model.config.to_dict(),
        "config_name": config_name,
        "step": step,
        "metrics": dict(metrics or {}),
        "dtype": str(dtype).removeprefix("torch."),
        **dict(extra or {}),
    }
    try:
        write_json(checkpoint_sidecar(path), meta, replace=replace)
    except BaseException:
        if not replace:
            weights.take_back()
        raise
    return path


def extra_records(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The records a sidecar carries beyond save_checkpoint's own (a blend's recipe, a source)."""
    return {k: v for k, v in meta.items() if k not in OWN_FIELDS}


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The sidecar of a checkpoint, validated; raises CheckpointError with a one-line reason."""
    path = Path(path)
    if path.suffix.lower() in PICKLED_SUFFIXES:
        raise CheckpointError(
            f"{path}: not a .safetensors checkpoint; bdinn never loads pickled weights (.pt, .pth, .ckpt), "
            "which can run code: save them with safetensors"
        )
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(
            f"{path}: not a checkpoint; give NAME.safetensors (with NAME.json beside it), "
            "as bdinn-train writes"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    meta_path = checkpoint_sidecar(path)
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: missing its config {meta_path.name} (a bdinn checkpoint is a pair)")
    if meta_path.stat().st_size > MAX_RECORD_BYTES:
        raise CheckpointError(
            f"{meta_path}: over {MAX_RECORD_BYTES >> 20} MB, not a config bdinn-train writes (a few KB)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except OSError as exc:  # a permission-denied sidecar was a bare PermissionError
        raise _unreadable(meta_path, exc) from None
    except (ValueError, RecursionError) as exc:  # JSON or UTF-8 errors; nesting thousands deep
        raise CheckpointError(f"{meta_path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if isinstance(meta, dict) and meta.get("format") == STATE_FORMAT:
        raise CheckpointError(
            f"{path}: a run's training state (for --resume), not a checkpoint; use last.safetensors or "
            "best.safetensors beside it"
        )
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a bdinn checkpoint config (expected format {FORMAT!r})")
    if problem := _own_field_problem(meta):
        raise CheckpointError(f"{meta_path}: {problem} (was it edited? bdinn-train writes it whole)")
    return meta


def _own_field_problem(meta: Mapping[str, Any]) -> str | None:
    """What is wrong with a sidecar's own fields, which fine-tunes, exports and records copy on."""
    step, name, metrics = meta.get("step", 0), meta.get("config_name"), meta.get("metrics", {})
    if "config" not in meta:
        return "no architecture config (its 'config' entry)"
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step must be a whole number of at least 0, not {step!r}"
    if name is not None and not isinstance(name, str):
        return f"config_name must be a name or null, not {name!r}"
    if not isinstance(metrics, dict) or not all(
        (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None for v in metrics.values()
    ):
        return "metrics must map names to numbers"
    if meta.get("dtype", "float32") not in _DTYPES:
        return f"dtype must be one of {', '.join(sorted(_DTYPES))}, not {meta.get('dtype')!r}"
    for record in ("training", "interpolated"):
        if not isinstance(meta.get(record), (dict, type(None))):
            return f"its {record} record must be an object or null"
    return None


def read_checkpoint_config(path: Path) -> tuple[BDINNConfig, dict[str, Any]]:
    """The architecture a checkpoint's sidecar describes, and the sidecar; weights are not read.
    A configuration name (`lite`, `paper`) must be that configuration: exports and fine-tunes
    report and record it."""
    meta = read_checkpoint_meta(path)
    try:
        config = BDINNConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint_sidecar(path)}: invalid architecture config ({exc})") from None
    name = meta.get("config_name")
    if name in CONFIGS and CONFIGS[name] != config:
        raise CheckpointError(
            f"{checkpoint_sidecar(path)}: config_name says {name!r}, but its config is not that "
            "configuration (was it edited? bdinn-train writes it whole)"
        )
    return config, meta


def load_checkpoint(path: Path) -> tuple[BDINN, dict[str, Any]]:
    """Build the network the sidecar describes and load its weights (as float32).

    The weights' names and shapes are checked, from the safetensors header, against the network
    built on the meta device (no memory) before the real one is, and their count against the
    config's floor before that: a sidecar edited to ask for a huge network took gigabytes and
    minutes before it was found not to match its weights.
    """
    path = Path(path)
    config, meta = read_checkpoint_config(path)
    check_weights(path, config)
    model = BDINN(config)
    try:
        state = load_file(readable(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise _not_safetensors(path, exc) from None
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model, meta


def check_finite(path: Path, model: torch.nn.Module | None = None) -> None:
    """CheckpointError naming the first tensor of `path` (or of `model`, loaded from it) holding
    NaN or infinity: fine-tuned from such weights, a run stopped at step 0 blaming the learning
    rate after minutes of data preparation, and an export built a plan that serves nothing."""
    try:
        if model is not None:
            broken = _first_non_finite(model.state_dict().items())
        else:
            with safe_open(readable(path), "pt") as weights:
                broken = _first_non_finite((name, weights.get_tensor(name)) for name in weights.keys())  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise _not_safetensors(path, exc) from None
    if broken is not None:
        raise CheckpointError(
            f"{path}: tensor {broken} holds NaN or infinite values (a run's diverged weights?); give a "
            "checkpoint from before it diverged"
        )


def _first_non_finite(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def readable(path: Path) -> str:
    """`path` as safetensors takes it, opened once first: safetensors reports a file it may not
    read as "No such file or directory", which sent users looking for a file that is there."""
    try:
        with path.open("rb"):
            return str(path)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _not_safetensors(path: Path, exc: Exception) -> CheckpointError:
    """What safetensors' refusal of a file means, and what to do about it."""
    try:
        with path.open("rb") as stream:
            start = stream.read(9)
    except OSError:
        start = b""
    # A safetensors file's JSON header starts at byte 8; torch.save writes a zip, older ones a pickle
    if start[8:9] != b"{" and start.startswith((b"PK\x03\x04", b"\x80")):
        advice = "a PyTorch pickle (torch.save), which bdinn does not load: save the weights with safetensors"
    else:
        advice = "damaged or cut short: copy it again, or use another checkpoint"
    return CheckpointError(f"{path}: not a readable safetensors file ({exc}); {advice}")


def _unreadable(path: Path, exc: OSError) -> CheckpointError:
    return CheckpointError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions")


def check_weights(path: Path, config: BDINNConfig) -> None:
    """CheckpointError unless the file's header names the tensors `config` needs, in its shapes;
    reads no weights, so a command can refuse a cut-short or mismatched file before its work."""
    try:
        with safe_open(readable(path), "pt") as weights:
            slices = {name: weights.get_slice(name) for name in weights.keys()}  # noqa: SIM118 (not iterable)
            stored = {name: list(part.get_shape()) for name, part in slices.items()}
            kinds = {name: part.get_dtype() for name, part in slices.items()}
    except (SafetensorError, OSError) as exc:
        raise _not_safetensors(path, exc) from None
    if len(stored) < config.fewest_tensors():
        raise CheckpointError(
            f"{path}: weights do not match the config in {checkpoint_sidecar(path).name}: it needs "
            f"{config.fewest_tensors()} tensors or more, the file holds {len(stored)}"
        )
    try:
        with torch.device("meta"):
            expected = {name: list(t.shape) for name, t in BDINN(config).state_dict().items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint_sidecar(path)}: invalid architecture config ({exc})") from None
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        detail = ", ".join(
            f"{len(names)} {kind} (e.g. {names[0]})"
            for kind, names in (("missing", missing), ("unexpected", unexpected))
            if names
        )
        raise CheckpointError(
            f"{path}: weights do not match the config in {checkpoint_sidecar(path).name}: {detail}"
        )
    for name, shape in stored.items():
        if shape != expected[name]:
            raise CheckpointError(
                f"{path}: weight {name} has shape {shape}, the config needs {expected[name]}"
            )
    for name, kind in kinds.items():  # integers would be copied into the float weights, cut off
        if kind not in _STORED_DTYPES:
            raise CheckpointError(
                f"{path}: weight {name} is stored as {kind}; a bdinn checkpoint stores F32, F16 or BF16"
            )
