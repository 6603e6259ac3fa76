"""Milliseconds per training step, and whether the GPU or the launching CPU sets the pace.

The trainer's own step (forward, L1 + FFT loss, backward, clipping, Adam) on random patches, so
data loading is left out. On an H200 a `lite` step of 16 x 256² took 82 ms with the GPU busy for
49 ms of it: the profiler counts each CUDA kernel launched and the CPU time spent issuing them,
which is how that was found. Use it before a long GPU run to pick the batch and patch size.

    python benchmarks/bench_train_step.py [--config lite] [--batch-size 16] [--patch-size 256] \
        [--device auto] [--amp] [--banded-impl gridsample] [--json out.json]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import torch
from torch.profiler import ProfilerActivity, profile

from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly
from bdinn.runtime.cli_reports import json_option, report_files, write_report
from bdinn.train.cli import resolve_config
from bdinn.train.network import BANDED_CONV_IMPLS
from bdinn.train.trainer import Trainer, TrainingError, TrainSettings, resolve_device


def _profile_one_step(trainer: Trainer, banded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """Kernels launched and CPU / GPU time of one step, from the PyTorch profiler (CUDA only)."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        trainer.train_step(banded, clean)
        torch.cuda.synchronize()
    events = prof.key_averages()
    return {
        "cuda_kernels": sum(e.count for e in events if e.device_type.name == "CUDA"),
        "cpu_ms": sum(e.self_cpu_time_total for e in events) / 1000,
        "gpu_ms": sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA") / 1000,
    }


@click.command("bench_train_step.py", cls=BdinnCommand)
@click.option("--config", "config_value", default="lite", show_default=True, help="lite, paper or JSON file.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--patch-size", type=click.IntRange(16), default=256, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--amp", is_flag=True, help="bfloat16 autocast (CUDA only), as bdinn-train --amp.")
@click.option(
    "--banded-impl", type=click.Choice(sorted(BANDED_CONV_IMPLS)), default="gridsample", show_default=True
)
@click.option("--steps", type=click.IntRange(1), default=10, show_default=True, help="Timed steps.")
@json_option
@report_files("json_path")
@stops_cleanly
def main(
    config_value: str,
    batch_size: int,
    patch_size: int,
    device: str,
    amp: bool,
    banded_impl: str,
    steps: int,
    json_path: Path | None,
) -> None:
    """Time bdinn-train's step on random patches (after 3 warm-up steps)."""
    config, name = resolve_config(config_value)
    try:
        target = resolve_device(device, 0)
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from None
    if amp and target.type != "cuda":
        raise click.UsageError("--amp needs a CUDA device")
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, 3, patch_size, patch_size)
    banded, clean = (torch.rand(shape, generator=generator).to(target) for _ in range(2))
    settings = TrainSettings(
        config=config.to_dict(), config_name=name, batch_size=batch_size, amp=amp, device=target.type
    )
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(settings, [(banded[0], clean[0])] * batch_size, None, Path(out))
        trainer.model.set_banded_impl(banded_impl)
        sync = torch.cuda.synchronize if target.type == "cuda" else lambda: None
        for _ in range(3):
            trainer.train_step(banded, clean)
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(banded, clean)
        sync()
        seconds = time.perf_counter() - started
        result: dict[str, object] = {
            "config": name or config_value,
            "batch_size": batch_size,
            "patch_size": patch_size,
            "device": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
            "amp": amp,
            "banded_impl": banded_impl,
            "ms_per_step": seconds / steps * 1000,
            "patches_per_s": batch_size * steps / seconds,
        }
        if target.type == "cuda":
            result |= _profile_one_step(trainer, banded, clean)
            result["peak_memory_gib"] = torch.cuda.max_memory_allocated(target) / 2**30
    click.echo(" | ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    if json_path:
        write_report(json_path, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
