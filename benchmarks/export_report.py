"""Export every graph of a configuration and report size, node counts, time and accuracy.

For each graph (plugin, gridsample, deformconv) in FP32 and FP16: nodes before/after
simplification, export seconds, and the output against FP32 PyTorch on real pictures (max abs
error, PSNR of the graph's output against PyTorch's). Portable graphs run in ONNX Runtime; the
plugin graph runs in onnx.reference with the numpy plugin node (slow, so on a crop).

    python benchmarks/export_report.py [CHECKPOINT | --config paper] [--markdown out.md]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch
from onnx.reference import ReferenceEvaluator

from bdinn.export.onnx_export import export_onnx
from bdinn.export.onnx_reference import BandedDeformConv2d as PluginNode
from bdinn.runtime import default_model_path
from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly
from bdinn.runtime.cli_reports import ReportFile, report_files, write_report
from bdinn.runtime.imageio import read_image, to_float
from bdinn.runtime.metrics import psnr
from bdinn.train.checkpoint import CheckpointError, load_checkpoint
from bdinn.train.network import CONFIGS, build_model

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def run_graph(path: Path, graph: str, image: np.ndarray, fp16: bool) -> np.ndarray:
    feed = {"image": image.astype(np.float16 if fp16 else np.float32)}
    if graph == "plugin":
        return ReferenceEvaluator(str(path), new_ops=[PluginNode]).run(None, feed)[0].astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0].astype(np.float32)


@click.command("export_report.py", cls=BdinnCommand)
@click.argument("checkpoint", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config", "config_name", type=click.Choice(sorted(CONFIGS)), default=None,
              help="Untrained named config instead of a checkpoint.")  # fmt: skip
@click.option("--markdown", "markdown_out", type=ReportFile(), default=None)
@report_files("markdown_out", models="checkpoint")
@stops_cleanly
def main(checkpoint: Path | None, config_name: str | None, markdown_out: Path | None) -> None:
    """Export report for CHECKPOINT (default: the bundled model)."""
    if config_name and checkpoint:  # the checkpoint went unused without a word
        raise click.UsageError("give a CHECKPOINT or --config, not both")
    if config_name:
        torch.manual_seed(0)
        model, label = build_model(config_name).eval(), f"{config_name} (random init)"
    else:
        checkpoint = checkpoint or default_model_path("torch")
        try:
            model, meta = load_checkpoint(checkpoint)
        except CheckpointError as exc:
            raise click.ClickException(str(exc)) from None
        label = f"{checkpoint.name} ({meta.get('config_name')}, step {meta.get('step')})"
    pictures = [to_float(read_image(p)).transpose(2, 0, 1)[None] for p in sorted(DATA.glob("*.png"))]
    with torch.no_grad():
        expected = [model(torch.from_numpy(p)).numpy() for p in pictures]
    lines = [
        f"Model: {label}; pictures: tests/data (3 x 192x320; plugin graph on a 64x96 crop).",
        "",
        "| graph | precision | nodes exported → simplified | export s | max abs error | PSNR vs FP32 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for graph in ("plugin", "gridsample", "deformconv"):
            for fp16 in (False, True):
                result = export_onnx(model, Path(folder) / f"{graph}-{fp16}.onnx", graph, fp16)
                errors, scores = [], []
                for picture, reference in zip(pictures, expected, strict=True):
                    if graph == "plugin":
                        picture = picture[:, :, :64, :96]
                        with torch.no_grad():
                            reference = model(torch.from_numpy(picture)).numpy()
                    out = run_graph(result.path, graph, picture, fp16)
                    errors.append(float(np.abs(out - reference).max()))
                    scores.append(psnr(np.clip(out, 0, 1), np.clip(reference, 0, 1)))
                precision = "FP16" if fp16 else "FP32"
                lines.append(
                    f"| {graph} | {precision} | {result.nodes_exported} → {result.nodes_final} | "
                    f"{result.seconds:.0f} | {max(errors):.2e} | {min(scores):.1f} dB |"
                )
                click.echo(lines[-1], err=True)
    table = "\n".join(lines) + "\n"
    click.echo(table)
    if markdown_out:
        write_report(markdown_out, table)


if __name__ == "__main__":
    main()
