"""`bdinn-export [CHECKPOINT] --fp16 -o model.plan`: checkpoint to ONNX to a TensorRT engine."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from ..runtime.backends.base import BackendError
from ..runtime.cli_options import (
    BdinnCommand,
    counting_seconds,
    one_line,
    one_line_warnings,
    parse_size,
    stops_cleanly,
)
from ..runtime.cli_reports import echo_result
from ..runtime.debander import default_model_path
from ..runtime.engine_sidecar import plan_sidecar
from ..runtime.files import (
    OutputError,
    check_writable,
    file_digest,
    files_of_model,
    restored_if_failed,
    user_cache,
)
from ..runtime.tensorrt import TensorRTUnavailable
from ..train.checkpoint import CheckpointError, check_finite, load_checkpoint
from ..train.network import BDINN, with_coarse_pass
from .engine import RTX_TARGETS, EngineError, EngineSettings, Profile, build_engine, preflight
from .onnx_export import GRAPHS, IO_MODES, export_onnx


def parse_targets(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    targets = tuple(dict.fromkeys(t.strip().lower() for t in value.split(",") if t.strip()))
    if not targets:
        raise click.BadParameter(f"{value!r} names no target; e.g. sm89 or sm86,sm89,sm120")
    unknown = [t for t in targets if t not in RTX_TARGETS]
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(unknown)}; TensorRT-RTX targets: {', '.join(RTX_TARGETS)}"
        )
    return targets


def coarse_passed(model: BDINN, meta: dict) -> tuple[BDINN, dict]:
    """The model with the coarse pass, and its checkpoint's record as the engine's sidecar takes it:
    the config that runs, and no configuration's name (lite with the pass is not lite; the sidecar
    said it was)."""
    model = with_coarse_pass(model)
    return model, {**meta, "config": model.config.to_dict(), "config_name": None}


def check_output_suffix(output: Path, onnx_only: bool) -> None:
    """An engine must be NAME.plan or NAME.engine and an ONNX model NAME.onnx: that is how
    bdinn-run and bdinn-bench pick the backend that can read the file."""
    wanted = (".onnx",) if onnx_only else (".plan", ".engine")
    if output.suffix.lower() not in wanted:
        hint = "drop --onnx-only for an engine" if onnx_only else "add --onnx-only for an ONNX model"
        raise click.BadParameter(f"{output}: name it {' or '.join('NAME' + w for w in wanted)} ({hint})",
                                 param_hint="-o")  # fmt: skip


@click.command("bdinn-export", cls=BdinnCommand)
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Plan (or .onnx with --onnx-only) [default: beside the checkpoint; for the bundled model, "
    "bdinn-default-GRAPH-PRECISION.plan here; -uint8 with --io uint8, -coarse with --coarse-pass].",
)
@click.option("--fp16", is_flag=True, help="Float16 graph and engine (sampling coordinates stay float32).")
@click.option(
    "--graph",
    type=click.Choice(sorted(GRAPHS)),
    default="plugin",
    help="plugin: our TensorRT plugin; gridsample/deformconv: standard ONNX ops only.",
)
@click.option(
    "--io",
    type=click.Choice(IO_MODES),
    default="float",
    help="float: NCHW [0,1]; uint8: HxWx3 uint8 RGB in and out, converted inside the graph.",
)
@click.option(
    "--coarse-pass",
    is_flag=True,
    help="Add the coarse pass: the network runs again on the half-size frame and gives the low "
    "frequencies of flat areas, so bands twice as wide are rebuilt (a quarter more network work).",
)
@click.option("--onnx-only", is_flag=True, help="Write the ONNX file and stop.")
@click.option("--min", "min_size", default="64x64", callback=parse_size, help="Smallest HEIGHTxWIDTH.")
@click.option("--opt", "opt_size", default="1080x1920", callback=parse_size, help="HEIGHTxWIDTH tuned for.")
@click.option("--max", "max_size", default="2160x3840", callback=parse_size, help="Largest HEIGHTxWIDTH.")
@click.option(
    "--target",
    "targets",
    default=None,
    callback=parse_targets,
    help="TensorRT-RTX compute capabilities, e.g. sm89,sm120 (builds without a GPU).",
)
@click.option("--opt-level", default=3, type=click.IntRange(0, 5), help="Builder optimisation level.")
@click.option(
    "--workspace",
    "workspace_mb",
    default=None,
    type=click.IntRange(1, 1 << 20),  # 1 TiB, past any GPU's memory: 2^44 overflowed TensorRT's bindings
    help="Workspace limit, MiB [default: TensorRT's, the GPU's memory].",
)
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Persistent timing cache (TensorRT; TensorRT-RTX has none) [default: one per GPU, in the cache "
    "folder].",
)
@click.option(
    "--plugin-library",
    type=click.Path(path_type=Path),
    default=None,
    help="C++ plugin library (libbdinn_trt_plugin.so); the Python plugin otherwise.",
)
@click.option("--serialize-plugin", is_flag=True, help="Embed --plugin-library into the plan.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Engine cache [default: ~/.cache/bdinn/engines, or $XDG_CACHE_HOME/bdinn/engines].",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing plan, its sidecar and ONNX file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@stops_cleanly
@one_line_warnings()
def main(
    checkpoint: Path | None,
    output: Path | None,
    fp16: bool,
    graph: str,
    io: str,
    coarse_pass: bool,
    onnx_only: bool,
    min_size: tuple[int, int],
    opt_size: tuple[int, int],
    max_size: tuple[int, int],
    targets: tuple[str, ...],
    opt_level: int,
    workspace_mb: int | None,
    timing_cache: Path | None,
    plugin_library: Path | None,
    serialize_plugin: bool,
    cache_dir: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Export a bdinn checkpoint (NAME.safetensors + NAME.json), or without one the bundled
    default model, to ONNX and a TensorRT engine."""
    if onnx_only:
        check_no_engine_options(click.get_current_context())
    precision = "fp16" if fp16 else "fp32"

    def say(text: str) -> None:  # escaped: a file name or sidecar field could forge a progress line
        with contextlib.suppress(OSError):  # | head, > /dev/full: the export goes on without its lines
            click.echo(one_line(text), err=as_json)

    try:
        if checkpoint is None:  # the bundled model lives in site-packages: write beside the user
            checkpoint = default_model_path("torch")
            stem = Path(f"bdinn-{checkpoint.stem}")
        else:
            stem = checkpoint.with_suffix("")
        kind = f"{graph}-{precision}{'-uint8' if io == 'uint8' else ''}{'-coarse' if coarse_pass else ''}"
        output = output or Path(f"{stem}-{kind}{'.onnx' if onnx_only else '.plan'}")  # each kind its own
        onnx_path = output if onnx_only else output.with_suffix(".onnx")
        check_outputs(checkpoint, output, onnx_only, timing_cache, force)
        cache_dir = cache_dir or user_cache("engines")
        settings = EngineSettings(
            profile=Profile(min_size, opt_size, max_size), targets=targets, optimization_level=opt_level,
            workspace_mb=workspace_mb, timing_cache=timing_cache,
            plugin_library=plugin_library, serialize_plugin=serialize_plugin, cache_dir=cache_dir,
        )  # fmt: skip
        if onnx_only:
            settings.profile.check()
        else:
            preflight(settings, graph)
        model, meta = load_checkpoint(checkpoint)
        check_finite(checkpoint, model)
        name = meta.get("config_name") or "custom"
        say(f"checkpoint: {checkpoint} ({name} configuration, step {meta.get('step', '?')})")
        if coarse_pass:
            model, meta = coarse_passed(model, meta)
        # The graph is a step towards the plan: a build that fails (or is stopped) takes it back, and a
        # forced export puts the old one back beside the old plan. (--onnx-only writes one file.)
        with restored_if_failed(onnx_path) if not onnx_only else contextlib.nullcontext([]) as onnx_written:
            with counting_seconds(f"onnx: exporting the {graph} graph"):
                result = export_onnx(
                    model, onnx_path, graph=graph, fp16=fp16, io=io, replace=force, written_into=onnx_written
                )
            nodes = f"{result.nodes_exported} nodes exported, {result.nodes_final} after simplification"
            took = f"in {result.seconds:.1f} s ({nodes})"
            say(f"onnx: {graph} graph, {precision}, {io} I/O -> {onnx_path} {took}")
            summary: dict = {"onnx": str(onnx_path), "onnx_seconds": result.seconds, "graph": graph,
                             "precision": precision, "io": io, "nodes_exported": result.nodes_exported,
                             "nodes_final": result.nodes_final, "op_counts": result.op_counts}  # fmt: skip
            if not onnx_only:
                engine_meta = {
                    "graph": graph, "precision": precision, "model_config": meta["config"],
                    "config_name": meta.get("config_name"),
                    "checkpoint_sha256": file_digest(checkpoint),
                }  # fmt: skip
                with counting_seconds("engine: building"):
                    built = build_engine(onnx_path, output, settings, io, engine_meta, replace=force)
        if not onnx_only:  # built: the new graph and plan stand together from here
            say(engine_line(output, built, targets))
            summary.update({"plan": str(output), "sidecar": str(plan_sidecar(output)),
                            "build_seconds": built["build_seconds"], "from_cache": built["from_cache"],
                            "tensorrt": built["tensorrt"], "targets": list(targets)})  # fmt: skip
    except (BackendError, CheckpointError, EngineError, TensorRTUnavailable, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_result(json.dumps(summary, indent=2) + "\n", "the JSON summary")


def check_outputs(
    checkpoint: Path, output: Path, onnx_only: bool, timing_cache: Path | None, force: bool
) -> None:
    """Every file the export writes (the graph, the plan and its sidecar, the timing cache) can be
    written, and replaces no model file and, without --force, nothing: now, not after the work."""
    check_output_suffix(output, onnx_only)
    onnx_path = output if onnx_only else output.with_suffix(".onnx")
    written = list(dict.fromkeys((output, onnx_path, *([] if onnx_only else [plan_sidecar(output)]))))
    for path in written:  # first: a folder in the way was 'already exists (pass --force ...)', then this
        check_writable(path, inputs=files_of_model(checkpoint))
    if not force:
        check_not_there(written)
    if timing_cache is not None:  # a cache, rewritten after the build: never a model file or output
        if timing_cache.resolve() in {path.resolve() for path in written}:
            raise OutputError(
                f"{timing_cache}: is also this export's output; give --timing-cache its own file"
            )
        check_writable(timing_cache, inputs=files_of_model(checkpoint))


def engine_line(output: Path, built: dict, targets: tuple[str, ...]) -> str:
    """What was built for which GPUs, with which TensorRT, and how."""
    rtx = built["tensorrt"]["flavour"] == "tensorrt-rtx"  # default: any RTX GPU from Ampere on
    default = "TensorRT-RTX's default targets" if rtx else "this GPU"
    where = ", ".join(targets) if targets else default
    how = "from the engine cache" if built["from_cache"] else "built"
    flavour = f"{built['tensorrt']['flavour']} {built['tensorrt']['version']}"
    return f"engine: {output} for {where} with {flavour}, {how} in {built['build_seconds']:.1f} s"


def check_not_there(paths: list[Path]) -> None:
    """An engine took minutes to build for one GPU, and the ONNX file beside a plan may be another
    graph the user keeps for ONNX Runtime: like bdinn-run, never replace one unasked."""
    existing = [str(path) for path in paths if path.exists() or path.is_symlink()]
    if existing:
        verb, them = ("exist", "them") if len(existing) > 1 else ("exists", "it")
        names = ", ".join(existing)
        raise click.ClickException(f"{names}: already {verb} (pass --force to overwrite {them})")


ENGINE_OPTIONS = {
    "min_size": "--min", "opt_size": "--opt", "max_size": "--max", "targets": "--target",
    "opt_level": "--opt-level", "workspace_mb": "--workspace", "timing_cache": "--timing-cache",
    "plugin_library": "--plugin-library", "serialize_plugin": "--serialize-plugin",
    "cache_dir": "--cache-dir",
}  # fmt: skip


def check_no_engine_options(ctx: click.Context) -> None:
    """--onnx-only with an engine's options is a mistake to say, not to ignore: --target sm89
    --onnx-only exited 0 without an engine."""
    given = [
        flag
        for name, flag in ENGINE_OPTIONS.items()
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: engine options; --onnx-only builds no engine (drop them)"
        )


if __name__ == "__main__":
    main()
