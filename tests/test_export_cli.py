"""`bdinn-export` end to end with the real TensorRT-RTX builder (engines for SM89, no GPU)."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from common import MICRO, TINY

pytest.importorskip("onnx", reason="needs the onnx extra")

import onnx
import torch

from bdinn.export.cli import main
from bdinn.runtime.debander import default_model_path
from bdinn.runtime.files import OutputError
from bdinn.runtime.tensorrt import TensorRTUnavailable, load_tensorrt
from bdinn.train.checkpoint import load_checkpoint, save_checkpoint
from bdinn.train.network import BDINN, BandedDeformConv2d, build_model

try:
    RTX = load_tensorrt("tensorrt-rtx")
except TensorRTUnavailable:
    RTX = None
needs_rtx = pytest.mark.skipif(RTX is None, reason="TensorRT-RTX is not installed")


LITE = build_model("lite")


def banded_layers(model: BDINN) -> int:
    return sum(isinstance(m, BandedDeformConv2d) for m in model.modules())


BANDED_CONVS = banded_layers(LITE)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A `lite` checkpoint: the configuration users export (the bundled model's)."""
    folder = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(folder / "lite.safetensors", LITE, config_name="lite", step=12)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A TINY checkpoint, for what does not depend on the network's size: it exports in half the time."""
    folder = tmp_path_factory.mktemp("tiny")
    return save_checkpoint(folder / "tiny.safetensors", BDINN(TINY), config_name=None, step=1)


def export(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


@needs_rtx
@pytest.mark.parametrize(
    ("graph", "fp16", "config"),
    [
        ("plugin", True, "lite"),
        ("plugin", False, "tiny"),
        ("gridsample", True, "tiny"),
        ("gridsample", False, "tiny"),
    ],
)
def test_builds_an_engine_for_sm89_with_sidecar(checkpoint, tiny_checkpoint, tmp_path, graph, fp16, config):
    """Each graph and precision; the `lite` network (the bundled model's) where users build it."""
    model, source = (LITE, checkpoint) if config == "lite" else (BDINN(TINY), tiny_checkpoint)
    plan = tmp_path / "model.plan"
    args = [
        str(source),
        "-o",
        str(plan),
        "--graph",
        graph,
        "--target",
        "sm89",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    result = export(*args, *(["--fp16"] if fp16 else []), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["plan"] == str(plan) and plan.stat().st_size > 100_000
    assert summary["from_cache"] is False
    sidecar = json.loads((tmp_path / "model.plan.json").read_text())
    assert sidecar["format"] == "bdinn-engine/1"
    assert sidecar["graph"] == graph and sidecar["precision"] == ("fp16" if fp16 else "fp32")
    assert sidecar["targets"] == ["sm89"] and sidecar["tensorrt"]["flavour"] == "tensorrt-rtx"
    assert sidecar["io"]["input"]["dtype"] == ("float16" if fp16 else "float32")
    assert sidecar["profile"] == {"min": [64, 64], "opt": [1080, 1920], "max": [2160, 3840]}
    assert sidecar["plugin"]["name"] == "BandedDeformConv2d" and sidecar["plugin"]["namespace"] == "bdinn"
    assert sidecar["model_config"] == json.loads(json.dumps(model.config.to_dict()))
    assert sidecar["plan_sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()
    if graph == "plugin":
        banded = banded_layers(model)
        assert plan.read_bytes().count(b"BandedDeformConv2d") >= banded > 0
        # Same inputs again: the engine comes from the cache, byte for byte.
        again = export(
            *args[:2], str(tmp_path / "again.plan"), *args[3:], *(["--fp16"] if fp16 else []), "--json"
        )
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["from_cache"] is True
        assert (tmp_path / "again.plan").read_bytes() == plan.read_bytes()


def test_a_damaged_cached_plan_is_not_used(tmp_path):
    """A cached plan cut short was copied out as the new plan (only a GPU would have refused it)."""
    from bdinn.export.engine import _from_cache, _store

    cached = tmp_path / "c" / "key.plan"
    cached.parent.mkdir()
    _store(cached, b"a whole plan")
    assert _from_cache(cached) == b"a whole plan"
    cached.write_bytes(b"a whole")
    with pytest.warns(
        UserWarning, match=r"key\.plan: damaged \(its SHA-256 is not the one recorded\); building again"
    ):
        assert _from_cache(cached) is None
    cached.with_suffix(".sha256").unlink()  # cached before plans carried a hash: built again, quietly
    assert _from_cache(cached) is None


@needs_rtx
def test_an_unwritable_engine_cache_never_spoils_the_plan(tmp_path):
    """A cache that could not be written failed the export after the plan was written, leaving it
    without its sidecar; now the plan and its sidecar are written and the cache is a warning."""
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    (tmp_path / "file").write_text("not a folder")
    blocked = export(
        str(micro), "--graph", "gridsample", "--target", "sm89", "--min", "16x16", "--opt", "64x64",
        "--max", "128x128", "-o", str(tmp_path / "d.plan"), "--cache-dir", str(tmp_path / "file" / "cache"),
    )  # fmt: skip
    assert blocked.exit_code == 0, blocked.output
    assert "Warning: the engine is built, but not cached:" in blocked.stderr
    assert (tmp_path / "d.plan.json").is_file() and (tmp_path / "d.plan").stat().st_size > 10_000
    # --force again, with the disk full by the time the sidecar is written: the old plan was
    # deleted (its new sidecar failed), now the old pair and graph stand as they were.
    old = {path.name: path.read_bytes() for path in tmp_path.glob("d.*")}
    import bdinn.export.engine as engine

    def full(path, text, replace=True):
        raise OutputError(f"{path}: cannot be written (No space left on device)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "atomic_write_text", full)
        failed = export(
            str(micro), "--graph", "gridsample", "--target", "sm89", "--min", "16x16", "--opt", "64x64",
            "--max", "96x96", "-o", str(tmp_path / "d.plan"), "--force",
        )  # fmt: skip
    assert failed.exit_code == 1 and "d.plan.json: cannot be written (No space left" in failed.output
    assert {path.name: path.read_bytes() for path in tmp_path.glob("d.*")} == old


@needs_rtx
def test_deformconv_graph_is_refused_on_tensorrt_rtx(checkpoint, tmp_path):
    plan = tmp_path / "d.plan"
    result = export(str(checkpoint), "-o", str(plan), "--graph", "deformconv", "--target", "sm89")
    assert result.exit_code == 1
    assert "no DeformConv importer" in result.output and len(result.output.strip().splitlines()) <= 3
    assert not plan.exists()


@needs_rtx
def test_builds_a_uint8_io_engine_for_sm89(tiny_checkpoint, tmp_path):
    """H x W x 3 uint8 in and out: the parser refuses uint8 transposes, so the graph casts first."""
    plan = tmp_path / "u8.plan"
    args = [str(tiny_checkpoint), "-o", str(plan), "--io", "uint8", "--fp16", "--target", "sm89"]
    result = export(*args, "--cache-dir", str(tmp_path / "c"), "--json")
    assert result.exit_code == 0, result.output
    io = json.loads((tmp_path / "u8.plan.json").read_text())["io"]
    assert io["input"]["dtype"] == io["output"]["dtype"] == "uint8"


def test_onnx_only(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    result = export(str(tiny_checkpoint), "--onnx-only", "-o", str(out), "--graph", "gridsample", "--json")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000 and not list(tmp_path.glob("*.plan*"))
    banded = banded_layers(BDINN(TINY))
    assert json.loads(result.stdout)["op_counts"]["GridSample"] == banded == 8


def test_an_export_goes_on_when_its_progress_lines_cannot_be_printed(tiny_checkpoint, tmp_path):
    """bdinn-export > /dev/full (or | head -1) stopped at its first progress line: 'error: [Errno
    28] No space left on device', naming nothing, and an engine build would not have started."""
    code = "import sys; sys.argv[0] = 'bdinn-export'; from bdinn.export.cli import main; main()"
    out = tmp_path / "m.onnx"
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-c", code, str(tiny_checkpoint), "--onnx-only", "-o", str(out),
             "--graph", "gridsample"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000


def test_onnx_only_refuses_engine_options(checkpoint, tmp_path):
    result = export(
        str(checkpoint), "--onnx-only", "-o", str(tmp_path / "m.onnx"), "--target", "sm89", "--max", "100x100"
    )
    assert result.exit_code == 2
    assert "--max, --target: engine options; --onnx-only builds no engine (drop them)" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_without_a_checkpoint_exports_the_bundled_model_here(tmp_path, monkeypatch):
    """`bdinn-export --fp16` (what the runtime tells users to run) exports the bundled model
    into the working folder, never into the installed package."""
    bundled = default_model_path("torch")
    before = sorted(p.name for p in bundled.parent.iterdir())
    monkeypatch.chdir(tmp_path)
    result = export("--fp16", "--onnx-only")
    assert result.exit_code == 0, result.output
    step = load_checkpoint(bundled)[1]["step"]
    assert f"checkpoint: {bundled} (lite configuration, step {step})" in result.output
    proto = onnx.load(tmp_path / "bdinn-default-plugin-fp16.onnx")
    assert sum(n.op_type == "BandedDeformConv2d" for n in proto.graph.node) == BANDED_CONVS
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert sorted(p.name for p in bundled.parent.iterdir()) == before


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda p: p.write_bytes(b"junk"), [], "missing its config"),
        (None, ["--min", "512x512", "--max", "256x256"], "impossible profile"),
        (None, ["--max", "20000x20000"], "max <= 16384, the graph's own bound"),
        (None, ["--plugin-library", "/nonexistent/libbdinn_trt_plugin.so", "--target", "sm89"],
         "plugin library not found"),
        (None, ["--plugin-library", str(Path(__file__)), "--target", "sm89"],  # a file, not a library
         "TensorRT could not load this plugin library"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_leaves_no_plan(checkpoint, tmp_path, make, args, message):
    """Refused before the export: no ONNX file beside the plan either (it took minutes)."""
    if "TensorRT could not load" in message and RTX is None:
        pytest.skip("TensorRT-RTX is not installed")
    source = checkpoint
    if make is not None:
        source = tmp_path / "not-a-checkpoint.safetensors"
        make(source)
    plan = tmp_path / "out.plan"
    result = export(str(source), "-o", str(plan), *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("bdinn-export: error:") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not plan.exists() and not plan.with_suffix(".onnx").exists()


def test_the_timing_cache_is_never_the_checkpoint_nor_an_output(checkpoint, tmp_path):
    """Data-centre TensorRT rewrites --timing-cache after the build: named as the checkpoint or
    the plan, it would have replaced it without --force."""
    plan = tmp_path / "out.plan"
    before = checkpoint.read_bytes()
    for cache, said in [
        (checkpoint, "is one of this command's inputs"),
        (checkpoint.with_suffix(".json"), "is one of this command's inputs"),
        (plan, "is also this export's output"),
        (tmp_path / "out.onnx", "is also this export's output"),
    ]:
        result = export(str(checkpoint), "-o", str(plan), "--timing-cache", str(cache))
        assert result.exit_code == 1, result.output
        assert f"{cache}: {said}" in result.stderr
    assert checkpoint.read_bytes() == before and list(tmp_path.iterdir()) == []


def test_bdinn_tensorrt_names_itself_and_empty_is_unset(monkeypatch):
    """It has no command-line option, yet a bad value said only "unknown TensorRT flavour ''"."""
    monkeypatch.setenv("BDINN_TENSORRT", "rtx")
    with pytest.raises(TensorRTUnavailable, match=r"BDINN_TENSORRT='rtx' names no TensorRT; set tensorrt or"):
        load_tensorrt()
    monkeypatch.setenv("BDINN_TENSORRT", " ")
    try:
        load_tensorrt()  # as if unset: whichever is installed
    except TensorRTUnavailable as exc:  # none is: said as when unset
        assert "BDINN_TENSORRT" not in str(exc) and "flavour" not in str(exc)


def test_tensorrt_missing_is_a_clear_error(checkpoint, tmp_path):
    result = export(str(checkpoint), "-o", str(tmp_path / "x.plan"), env={"BDINN_TENSORRT": "tensorrt"})
    try:
        load_tensorrt("tensorrt")
    except TensorRTUnavailable:
        assert result.exit_code == 1
        assert "pip install '.[tensorrt]'" in result.output
    else:
        pytest.skip("data-centre TensorRT is installed here")


def test_bad_sizes_and_targets_are_usage_errors(checkpoint):
    assert export(str(checkpoint), "--opt", "big").exit_code == 2
    result = export(str(checkpoint), "--target", "sm90")
    assert result.exit_code == 2 and "sm75, sm80" in result.output
    result = export(str(checkpoint), "--target", ",")
    assert result.exit_code == 2 and "',' names no target" in result.output
    from bdinn.export.cli import parse_targets

    assert parse_targets(None, None, "SM89, sm89,sm120") == ("sm89", "sm120")  # one cache key per set
    # a traceback from TensorRT's bindings (bytes past 2^64), after the ONNX export
    result = export(str(checkpoint), "--workspace", str(1 << 44), "--target", "sm89")
    assert result.exit_code == 2 and "Invalid value for '--workspace'" in result.output


def test_existing_files_are_kept_unless_forced(tmp_path):
    """An engine is minutes of a GPU's build, and the ONNX file beside a plan may be the user's
    other graph (for ONNX Runtime): neither is replaced without --force, as in bdinn-run."""
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    theirs = tmp_path / "m.onnx"
    theirs.write_bytes(b"the user's own graph")
    plan = tmp_path / "m.plan"
    (tmp_path / "m.plan.json").write_text("{}")
    result = export(str(micro), "-o", str(plan), "--target", "sm89")
    assert result.exit_code == 1
    assert result.stderr == (
        f"bdinn-export: error: {theirs}, {plan}.json: already exist (pass --force to overwrite them)\n"
    )
    assert theirs.read_bytes() == b"the user's own graph" and not plan.exists()

    again = [str(micro), "--onnx-only", "--graph", "gridsample", "-o", str(theirs)]
    result = export(*again)
    assert result.exit_code == 1
    assert f"{theirs}: already exists (pass --force to overwrite it)" in result.stderr
    result = export(*again, "--force")
    assert result.exit_code == 0, result.output
    assert onnx.load(theirs).graph.node  # ours now: a graph where the user's bytes were


def test_an_export_stopped_during_the_build_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while TensorRT built left the ONNX file beside no plan, and the retry was
    refused for it (already exists); and a folder in the way of the sidecar failed after the build."""
    from bdinn.export import cli

    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    args = [str(micro), "--graph", "gridsample", "--target", "sm89", "-o", str(tmp_path / "m.plan")]
    (tmp_path / "m.plan.json").mkdir()
    result = export(*args, "--force")
    assert result.exit_code == 1 and "m.plan.json: is a folder; name a file to write" in result.stderr
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "m.plan.json").rmdir()

    def stopped(*_args, **_kwargs):  # while TensorRT builds (build_engine takes back its own files)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_engine", stopped)
    monkeypatch.setattr(cli, "preflight", lambda *_args: None)  # no TensorRT needed to stop a build
    result = export(*args)
    assert result.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["micro.json", "micro.safetensors"]


SIGNALLED_DURING_THE_BUILD = """
import os, signal, sys
from bdinn.export import cli, engine

real = engine.error_logger

def signalled_at_the_first_message(trt):  # SIGTERM arrives while TensorRT builds, in its logger
    logger = real(trt)
    log = type(logger).log

    def first(self, severity, message):
        if not sent:
            sent.append(message)
            os.kill(os.getpid(), signal.SIGTERM)
        return log(self, severity, message)

    type(logger).log = first
    return logger

sent = []
engine.error_logger = signalled_at_the_first_message
sys.argv[0] = "bdinn-export"
cli.main()
"""


@needs_rtx
def test_a_signal_during_the_tensorrt_build_stops_it(tmp_path):
    """Raised inside TensorRT's callbacks (its logger, our plugin), Ctrl-C and SIGTERM were caught
    by TensorRT: the build ran to its end, the export replaced the files and exited 0."""
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    plan = tmp_path / "m.plan"
    args = [
        str(micro),
        "--graph",
        "plugin",
        "--target",
        "sm89",
        "-o",
        str(plan),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED_DURING_THE_BUILD, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 143, done.stdout + done.stderr
    assert done.stderr.splitlines()[-1] == "Terminated."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["micro.json", "micro.safetensors"]


def test_a_forced_export_whose_build_fails_puts_the_old_graph_back(tmp_path, monkeypatch):
    """--force replaced the ONNX file before the engine built: a build that failed (or Ctrl-C in
    it) left the new graph beside the old plan, which was built from the old one."""
    from bdinn.export import cli

    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    old = {"m.onnx": b"the old graph", "m.plan": b"the old plan", "m.plan.json": b"{}"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setattr(cli, "preflight", lambda *_args: None)  # no TensorRT needed to fail a build
    for failure in (cli.EngineError("the build failed"), KeyboardInterrupt()):

        def failed(onnx_path, *_args, failure=failure, **_kwargs):
            assert onnx.load(onnx_path).graph.node  # the new graph was written
            raise failure

        monkeypatch.setattr(cli, "build_engine", failed)
        result = export(str(micro), "--graph", "gridsample", "-o", str(tmp_path / "m.plan"), "--force")
        assert result.exit_code == (1 if isinstance(failure, cli.EngineError) else 130), result.output
        assert {name: (tmp_path / name).read_bytes() for name in old} == old
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*old, "micro.json", "micro.safetensors"])
    # Ctrl-C the instant the new graph has its name, before the export has said it wrote it: the
    # new graph stayed beside the old plan, and the old graph was lost.
    import os
    import signal

    from bdinn.export import onnx_export

    real_write = onnx_export.atomic_write

    def stopped_just_after(*args, **kwargs):
        written = real_write(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return written

    monkeypatch.setattr(onnx_export, "atomic_write", stopped_just_after)
    result = export(str(micro), "--graph", "gridsample", "-o", str(tmp_path / "m.plan"), "--force")
    assert result.exit_code == 130 and {name: (tmp_path / name).read_bytes() for name in old} == old
    monkeypatch.setattr(onnx_export, "atomic_write", real_write)

    def built(onnx_path, plan_path, *_args, **_kwargs):
        plan_path.write_bytes(b"the new plan")
        rtx = {"flavour": "tensorrt-rtx", "version": "1"}
        return {"tensorrt": rtx, "from_cache": False, "build_seconds": 1}

    def stopped_while_saying(text):  # Ctrl-C (or a closed pipe) after the build, as it is reported
        if text.startswith("engine:"):
            raise KeyboardInterrupt
        return text

    monkeypatch.setattr(cli, "build_engine", built)
    monkeypatch.setattr(cli, "one_line", stopped_while_saying)
    result = export(str(micro), "--graph", "gridsample", "-o", str(tmp_path / "m.plan"), "--force")
    assert result.exit_code == 130
    # built: the new graph stays beside the new plan (the old graph was put back beside it)
    assert (tmp_path / "m.plan").read_bytes() == b"the new plan" and onnx.load(tmp_path / "m.onnx").graph.node


@needs_rtx
def test_a_failed_build_says_why_in_one_line_and_leaves_stdout_to_the_json(tmp_path):
    """TensorRT's log went to standard output, into --json's JSON, and the error said only "see
    its log above", naming the ONNX file the failed export had just taken back."""
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    args = [str(micro), "--graph", "gridsample", "--target", "sm89", "--min", "64x64", "--opt", "256x256",
            "--max", "512x512", "--workspace", "1", "-o", str(tmp_path / "m.plan"), "--json"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "bdinn.export.cli", *args], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    said = done.stderr.splitlines()[-1]
    assert said.startswith(
        f"bdinn-export: error: {tmp_path / 'm.plan'}: TensorRT could not build the engine: "
    )
    assert "workspace" in said and said.endswith("(raise --workspace, or leave it out)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["micro.json", "micro.safetensors"]


@needs_rtx
@pytest.mark.parametrize("theirs", ["m.plan", "m.plan.json"])
def test_a_plan_or_sidecar_another_export_wrote_meanwhile_is_kept(tmp_path, monkeypatch, theirs):
    """Two exports to one name both found it free before their minutes of building, and the last
    one's renames replaced the first one's plan (or paired its plan with the other's sidecar)."""
    from bdinn.export import engine

    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    real_build = engine._build

    def raced(*args, **kwargs) -> bytes:
        plan = real_build(*args, **kwargs)
        (tmp_path / theirs).write_bytes(b"the other export's")
        return plan

    monkeypatch.setattr(engine, "_build", raced)
    args = [
        str(micro), "--graph", "gridsample", "--target", "sm89", "--min", "16x16", "--opt", "64x64",
        "--max", "128x128", "-o", str(tmp_path / "m.plan"),
    ]  # fmt: skip
    result = export(*args, "--cache-dir", str(tmp_path / "c1"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"bdinn-export: error: {tmp_path / theirs}: appeared while this was being written and is kept (pass "
        "--force to overwrite it)\n"
    )
    assert (tmp_path / theirs).read_bytes() == b"the other export's"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "c1")  # the engine cache may be made
    assert left == sorted(["micro.json", "micro.safetensors", theirs])  # neither m.onnx nor a plan of its own

    result = export(*args, "--cache-dir", str(tmp_path / "c2"), "--force")  # built again, raced again
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "m.plan.json").read_text())
    assert sidecar["plan_sha256"] == hashlib.sha256((tmp_path / "m.plan").read_bytes()).hexdigest()


@needs_rtx
def test_a_plan_a_forced_export_put_in_place_of_ours_is_not_taken_back(tmp_path, monkeypatch):
    """Our plan was written, then another export with --force replaced it and wrote its sidecar:
    ours failed on that sidecar and took back the plan by name, deleting the other export's."""
    from bdinn.export import engine

    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    plan = tmp_path / "m.plan"
    real_write = engine.atomic_write_text

    def forced_in_between(path, text, replace=True):
        if path.name == "m.plan.json":  # ours is on disk; theirs goes over it, then their sidecar
            (tmp_path / "theirs").write_bytes(b"the other export's plan")
            (tmp_path / "theirs").replace(plan)
            path.write_text("{}")
        return real_write(path, text, replace=replace)

    monkeypatch.setattr(engine, "atomic_write_text", forced_in_between)
    args = [str(micro), "--graph", "gridsample", "--target", "sm89", "--min", "16x16", "--opt", "64x64",
            "--max", "128x128", "-o", str(plan), "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    result = export(*args)
    assert result.exit_code == 1 and "m.plan.json: appeared while this was being written" in result.stderr
    assert plan.read_bytes() == b"the other export's plan"
    assert (tmp_path / "m.plan.json").read_text() == "{}" and not (tmp_path / "m.onnx").exists()


def test_an_onnx_file_another_export_wrote_meanwhile_is_kept(tmp_path, monkeypatch):
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    theirs = tmp_path / "m.onnx"
    real_check = onnx.checker.check_model

    def raced(proto, *args, **kwargs) -> None:  # the last step before the file is written
        real_check(proto, *args, **kwargs)
        theirs.write_bytes(b"the other export's")

    monkeypatch.setattr(onnx.checker, "check_model", raced)
    result = export(str(micro), "--onnx-only", "--graph", "gridsample", "-o", str(theirs))
    assert result.exit_code == 1
    assert f"{theirs}: appeared while this was being written and is kept" in result.stderr
    assert theirs.read_bytes() == b"the other export's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "micro.json", "micro.safetensors"]


def test_a_name_cannot_forge_a_progress_line(tmp_path):
    """A checkpoint named "m<newline>onnx: all good" printed a line of its own on stdout."""
    odd = save_checkpoint(tmp_path / "m\nonnx: all good.safetensors", BDINN(MICRO), config_name=None, step=1)
    result = export(str(odd), "--onnx-only", "--graph", "gridsample", "-o", str(tmp_path / "m.onnx"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["checkpoint", "onnx"]
    assert "m\\nonnx: all good.safetensors" in lines[0]


@needs_rtx
def test_every_setting_that_changes_a_plan_changes_its_cache_key(tmp_path):
    """A key without the profile gave a later export with another --max the plan cached for the
    old one, while its sidecar claimed the new profile."""
    from dataclasses import replace

    from bdinn.export.engine import EngineSettings, Profile, cache_key

    graph, other_graph, library = "1" * 64, "2" * 64, tmp_path / "plugin.so"  # the graphs' SHA-256
    library.write_bytes(b"a plugin")
    base = EngineSettings(targets=("sm89",))
    key = cache_key(graph, base, RTX, "float")
    assert cache_key(graph, EngineSettings(targets=("sm89",)), RTX, "float") == key  # stable
    variants = [
        replace(base, profile=Profile(max=(1080, 1920))),
        replace(base, profile=Profile(min=(32, 32))),
        replace(base, profile=Profile(opt=(720, 1280))),
        replace(base, targets=("sm120",)),
        replace(base, optimization_level=5),
        replace(base, workspace_mb=512),
        replace(base, plugin_library=library),
        replace(base, plugin_library=library, serialize_plugin=True),
    ]
    keys = {cache_key(graph, settings, RTX, "float") for settings in variants}
    keys |= {cache_key(graph, base, RTX, "uint8"), cache_key(other_graph, base, RTX, "float")}
    assert len(keys) == len(variants) + 2 and key not in keys
    # Data-centre TensorRT builds for the GPU it runs on: a cache shared across a cluster's nodes
    # handed an A100's plan to an H100, which refused it, and every rebuild gave the same plan.
    datacentre = replace(RTX, flavour="tensorrt")
    a100 = cache_key(graph, EngineSettings(), datacentre, "float", "NVIDIA A100-SXM4-80GB sm80")
    assert a100 != cache_key(graph, EngineSettings(), datacentre, "float", "NVIDIA H100 80GB HBM3 sm90")


@needs_rtx
def test_the_coarse_pass_is_built_into_the_engine_and_recorded(tmp_path):
    """--coarse-pass: both passes in one plugin graph that TensorRT-RTX builds (a cubic Resize of a
    dynamic shape it could not), the sidecar's config saying so, and its own default file name."""
    tiny = save_checkpoint(tmp_path / "tiny.safetensors", BDINN(TINY), config_name=None, step=1)
    result = export(
        str(tiny), "--coarse-pass", "--fp16", "--graph", "plugin", "--target", "sm89", "--min", "16x16",
        "--opt", "64x64", "--max", "128x128", "--cache-dir", str(tmp_path / "c"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = tmp_path / "tiny-plugin-fp16-coarse.plan"
    sidecar = json.loads((tmp_path / "tiny-plugin-fp16-coarse.plan.json").read_text())
    assert sidecar["model_config"] == json.loads(json.dumps({**TINY.to_dict(), "coarse_pass": True}))
    graph = onnx.load(tmp_path / "tiny-plugin-fp16-coarse.onnx").graph
    banded = banded_layers(BDINN(TINY))
    assert sum(n.op_type == "BandedDeformConv2d" for n in graph.node) == 2 * banded  # full and half size
    assert not any(n.op_type == "Resize" for n in graph.node)
    assert plan.read_bytes().count(b"BandedDeformConv2d") >= 2 * banded


def test_a_folder_in_the_way_is_said_to_be_one(tmp_path):
    """It was 'already exists (pass --force to overwrite it)', and --force then said it is a folder."""
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    (tmp_path / "m.onnx").mkdir()
    result = export(str(micro), "-o", str(tmp_path / "m.plan"))
    assert (
        result.exit_code == 1
        and result.stderr
        == f"bdinn-export: error: {tmp_path / 'm.onnx'}: is a folder; name a file to write\n"
    )


def test_a_uint8_export_is_named_apart_from_the_float_one(tmp_path):
    """Both were NAME-GRAPH-PRECISION: the uint8 export was refused beside the float one, or with
    --force replaced it."""
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    for io in ("float", "uint8"):
        result = export(str(micro), "--onnx-only", "--graph", "gridsample", "--io", io)
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == [
        "micro-gridsample-fp32-uint8.onnx", "micro-gridsample-fp32.onnx"
    ]  # fmt: skip


def test_a_coarse_pass_export_names_no_configuration():
    """The bundled lite weights with the pass: the sidecar said config_name 'lite' beside a config
    that is not lite (a checkpoint saying so is refused)."""
    from bdinn.export.cli import coarse_passed
    from bdinn.train.network import CONFIGS

    model, meta = load_checkpoint(default_model_path().with_suffix(".safetensors"))
    lite = json.loads(json.dumps(CONFIGS["lite"].to_dict()))  # tuples as the sidecar's lists
    assert meta["config_name"] == "lite" and meta["config"] == lite
    model, meta = coarse_passed(model, meta)
    assert meta["config_name"] is None
    assert json.loads(json.dumps(meta["config"])) == {**lite, "coarse_pass": True}
    assert model.config.coarse_pass


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_standard_output_loses_only_the_json_summary(tmp_path):
    """The summary's print came after the try that turns errors into one line: a full disk on
    standard output was an OSError traceback, after the ONNX file was written."""
    micro = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    code = (
        "import sys; sys.argv[0] = 'bdinn-export'; from bdinn.runtime.torch_commands import export; export()"
    )
    out = tmp_path / "m.onnx"
    command = [sys.executable, "-c", code, str(micro), "--onnx-only", "--graph", "gridsample", "-o", str(out)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*command, "--json"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "bdinn-export: error: could not print the JSON summary (No space left on device)"
    )
    assert out.stat().st_size > 1000


def test_a_checkpoint_with_diverged_weights_is_refused_before_the_export(tmp_path):
    """It exported without a word; the graph, or a plan built for minutes, served nothing."""
    network = BDINN(MICRO)
    with torch.no_grad():
        next(network.parameters()).view(-1)[0] = math.nan
    micro = save_checkpoint(tmp_path / "micro.safetensors", network, config_name=None, step=1)
    result = export(str(micro), "--onnx-only", "--graph", "gridsample", "-o", str(tmp_path / "m.onnx"))
    assert result.exit_code == 1 and "holds NaN or infinite values" in result.output
    assert not (tmp_path / "m.onnx").exists()
