"""The JSON sidecar beside every TensorRT plan: written by bdinn-export, checked by the runtime.

A plan is opaque and only deserialises on the TensorRT build and GPU family it was made for; the
sidecar says which, so a mismatch is one clear line instead of TensorRT's own log noise.
"""

from __future__ import annotations

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


def sidecar_path(plan_path: Path) -> Path:
    return Path(plan_path).with_suffix(Path(plan_path).suffix + ".json")


def read_sidecar(plan_path: Path) -> dict[str, Any]:
    path = sidecar_path(plan_path)
    if not path.is_file():
        raise SidecarError(
            f"{plan_path}: its sidecar {path.name} is missing; keep it beside the plan, or rebuild both "
            "with bdinn-export"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SidecarError(f"{path}: unreadable engine sidecar ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != ENGINE_FORMAT:
        raise SidecarError(f"{path}: not a bdinn engine sidecar (expected format {ENGINE_FORMAT!r})")
    for key, fields in _FIELDS.items():
        if key not in data:
            raise SidecarError(f"{path}: engine sidecar lacks {key!r}; rebuild with bdinn-export")
        part = data[key]
        damaged = not isinstance(part, dict) or any(f not in part for f in fields)
        if key == "io" and not damaged:  # each side names its tensor and its dtype
            damaged = any(not isinstance(part[side], dict) or not {"name", "dtype"} <= part[side].keys()
                          for side in fields)  # fmt: skip
        if damaged:
            raise SidecarError(f"{path}: engine sidecar's {key!r} is damaged; rebuild with bdinn-export")
    return data
