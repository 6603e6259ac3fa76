"""The JSON sidecar beside every TensorRT plan: written by bdinn-export, checked by the runtime.

A plan is opaque and only deserialises on the TensorRT build and GPU family it was made for; the
sidecar says which, so a mismatch is one clear line instead of TensorRT's own log noise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ENGINE_FORMAT = "bdinn-engine/1"


class SidecarError(ValueError):
    """A missing or unreadable sidecar; the message is one line for the user."""


# The sidecar's parts the runtime reads, and the fields each must hold.
_FIELDS = {
    "io": ("input", "output"),
    "profile": ("min", "opt", "max"),
    "tensorrt": ("flavour", "version"),
    "plugin": (),
}


def plan_sidecar(plan_path: Path) -> Path:
    return Path(plan_path).with_suffix(Path(plan_path).suffix + ".json")


IO_DTYPES = ("float32", "float16", "uint8")
MAX_SIDECAR_BYTES = 16 << 20  # bdinn-export writes a few KB; JSON of a gigabyte took gigabytes to read
INPUT_NAME, OUTPUT_NAME = "image", "debanded"  # the exported graphs' (and so the plans') I/O tensors


def plan_digest(plan: bytes) -> str:
    """What the sidecar records of its plan: a sidecar copied beside another plan (FP16 beside
    FP32, uint8 I/O beside float) would size every buffer wrong."""
    return hashlib.sha256(plan).hexdigest()


def read_sidecar(plan_path: Path) -> tuple[dict[str, Any], bytes]:
    """The checked sidecar of a plan, and the plan's bytes (tens of MB, read once, for the caller
    that deserialises them), read after its sidecar: any file named .plan was read whole first, for
    "sidecar missing" after seconds and gigabytes."""
    path = plan_sidecar(plan_path)
    if not path.is_file():
        raise SidecarError(
            f"{plan_path}: its sidecar {path.name} is missing; keep it beside the plan, or rebuild both "
            "with bdinn-export"
        )
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise SidecarError(
            f"{path}: over {MAX_SIDECAR_BYTES >> 20} MB, not a sidecar bdinn-export writes (a few KB); "
            "rebuild the plan and its sidecar with bdinn-export"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise SidecarError(f"{path}: unreadable engine sidecar ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != ENGINE_FORMAT:
        raise SidecarError(f"{path}: not a bdinn engine sidecar (expected format {ENGINE_FORMAT!r})")
    for key in _FIELDS:
        if key not in data:
            raise SidecarError(f"{path}: engine sidecar lacks {key!r}; rebuild with bdinn-export")
        if _damaged(key, data[key]):
            raise SidecarError(f"{path}: engine sidecar's {key!r} is damaged; rebuild with bdinn-export")
    try:
        plan = Path(plan_path).read_bytes()
    except OSError as exc:
        raise SidecarError(f"{plan_path}: unreadable ({exc.strerror})") from None
    recorded = data.get("plan_sha256")  # sidecars from before it was recorded have none
    if recorded is not None and recorded != plan_digest(plan):
        raise SidecarError(
            f"{path}: describes another plan than {Path(plan_path).name} (its SHA-256 differs); keep "
            "each plan with its own sidecar, or rebuild both with bdinn-export"
        )
    return data, plan


def _damaged(key: str, part: Any) -> bool:
    """Whether a part of the sidecar lacks a field or holds one the runtime cannot use."""
    if not isinstance(part, dict) or any(f not in part for f in _FIELDS[key]):
        return True
    if key == "io":  # each side names its tensor and a dtype the runtime sizes buffers for
        sides = [part[side] for side in _FIELDS[key]]
        return any(not isinstance(side, dict) or side.get("dtype") not in IO_DTYPES
                   or not isinstance(side.get("name"), str) for side in sides)  # fmt: skip
    if key == "profile":  # (height, width) pairs of whole numbers
        return not all(_is_size(part[f]) for f in _FIELDS[key])
    if key == "tensorrt":
        return not all(isinstance(part[f], str) for f in _FIELDS[key])
    return False


def _is_size(pair: Any) -> bool:
    """[height, width] as JSON holds a profile bound: two whole numbers an exported graph takes
    (the runtime pads a frame up to the minimum: a crafted 100000 x 100000 would take 120 GB)."""
    from .processing import MAX_SIDE  # here: processing's own imports reach this module

    return (
        isinstance(pair, list) and len(pair) == 2 and all(type(n) is int and 0 < n <= MAX_SIDE for n in pair)
    )
