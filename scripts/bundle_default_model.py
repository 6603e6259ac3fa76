"""Turn a training checkpoint into the model bundled with bdinn (runtime/models/).

    python scripts/bundle_default_model.py runs/default/best.safetensors

Writes default.safetensors + default.json (float16 weights, a few MB) for the PyTorch backend
and default.onnx (the portable GridSample graph, float32, exported from those same float16
weights) for ONNX Runtime, so both backends serve exactly the same network. The checkpoint's
records (how it was trained, a blend's ends) come along with every path cut to its name.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from bdinn.export.onnx_export import export_onnx
from bdinn.runtime.cli_options import BdinnCommand, one_line_warnings, stops_cleanly
from bdinn.runtime.files import OutputError, check_writable, files_of_model
from bdinn.train.checkpoint import (
    CheckpointError,
    extra_records,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from bdinn.train.provenance import shareable

MODELS = Path(__file__).resolve().parents[1] / "runtime" / "models"


@click.command("bundle_default_model.py", cls=BdinnCommand)
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=MODELS)
@stops_cleanly
@one_line_warnings()
def main(checkpoint: Path, out: Path) -> None:
    """Bundle CHECKPOINT as the default model."""
    try:
        for name in ("default.safetensors", "default.json", "default.onnx"):  # now, not after the export
            check_writable(out / name, inputs=files_of_model(checkpoint))  # -o beside the checkpoint
        model, meta = load_checkpoint(checkpoint)
        model = model.half().float().eval()  # the float16 weights, which both files then hold
        extra = shareable(extra_records(meta))  # its training record, a blend's recipe; paths cut to names
        # The slow export first, beside the bundle: stopped there, the old bundle stays whole; the
        # weights and the rename then take a moment, so both backends never serve two networks.
        staged = out / ".default-new.onnx"
        try:
            export_onnx(model, staged, graph="gridsample")
            weights = save_checkpoint(
                out / "default.safetensors", model, config_name=meta.get("config_name"),
                step=meta.get("step", 0), metrics=meta.get("metrics"), dtype=torch.float16,
                extra={**extra, "source": checkpoint.name},
            )  # fmt: skip
            onnx = staged.replace(out / "default.onnx")
        finally:
            staged.unlink(missing_ok=True)
    except (CheckpointError, OutputError) as exc:
        raise click.ClickException(str(exc)) from None
    summary = {"weights": str(weights), "onnx": str(onnx), "meta": read_checkpoint_meta(weights)}
    click.echo(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
