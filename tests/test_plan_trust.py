"""What a TensorRT plan may make the runtime load: nothing its JSON sidecar names (anyone can edit
it), and the plugin library a plan carries only when the user allows it. Both are decided before
the GPU is looked for, so this machine without one tests them."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bdinn.runtime import BackendError, Debander
from bdinn.runtime.run_cli import main
from bdinn.runtime.tensorrt import TensorRTUnavailable, load_tensorrt

try:
    RTX = load_tensorrt("tensorrt-rtx")
except TensorRTUnavailable:
    RTX = None
pytestmark = pytest.mark.skipif(RTX is None, reason="TensorRT-RTX is not installed")


def fake_plan(folder, plugin: dict, content: bytes = b"not really a plan"):
    """A plan (bytes TensorRT never gets to see here) and a sidecar as bdinn-export writes one."""
    plan = folder / "model.plan"
    plan.write_bytes(content)
    side = {
        "format": "bdinn-engine/1",
        "graph": "plugin",
        "precision": "fp32",
        "plan_sha256": hashlib.sha256(plan.read_bytes()).hexdigest(),
        "io": {
            "input": {"name": "image", "dtype": "float32"},
            "output": {"name": "debanded", "dtype": "float32"},
        },
        "profile": {"min": [64, 64], "opt": [1080, 1920], "max": [2160, 3840]},
        "tensorrt": {"flavour": "tensorrt-rtx", "version": RTX.version},
        "targets": ["sm89"],
        "plugin": {"name": "BandedDeformConv2d", "version": "1", "namespace": "bdinn", **plugin},
    }
    (folder / "model.plan.json").write_text(json.dumps(side))
    return plan


def test_a_library_the_sidecar_names_is_never_loaded(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the library")
    marker = tmp_path / "loaded"
    source = tmp_path / "lib.c"
    source.write_text(
        "#include <stdio.h>\n"
        f'__attribute__((constructor)) static void on_load(void) {{ fopen("{marker}", "w"); }}\n'
    )
    library = tmp_path / "libplanted.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    plan = fake_plan(tmp_path, {"implementation": str(library), "serialized_in_plan": False})
    with pytest.raises(BackendError):  # no GPU here; on one, the Python plugin serves the plan
        Debander.open(plan)
    assert not marker.exists()  # it was loaded (and its code run) before the GPU was looked for


def test_a_plan_carrying_its_plugin_needs_the_users_leave(tmp_path):
    plan = fake_plan(
        tmp_path, {"implementation": "/build/libbdinn_trt_plugin.so", "serialized_in_plan": True}
    )
    with pytest.raises(BackendError) as refused:
        Debander.open(plan)
    message = str(refused.value)
    assert message.startswith(f"{plan}: carries its TensorRT plugin library, native code that runs as")
    assert "pass --allow-embedded-plugin (allow_embedded_plugin=True)" in message and "\n" not in message
    with pytest.raises(BackendError) as later:  # allowed: it goes on to look for a GPU
        Debander.open(plan, allow_embedded_plugin=True)
    assert "allow-embedded-plugin" not in str(later.value)


def test_a_plan_carrying_a_library_needs_leave_whatever_its_sidecar_says(tmp_path):
    """The sidecar comes with the plan: one saying "serialized_in_plan": false had TensorRT load the
    library inside the plan, and run its code, with no leave asked. A plan holding a shared
    library for the CPU is told by its bytes (CUDA device code, ELF for machine 190, is not one)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the library")
    source = tmp_path / "lib.c"
    source.write_text("int plugin_entry(void) { return 1; }\n")
    library = tmp_path / "libcarried.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    plugin = {"implementation": "/build/libbdinn_trt_plugin.so", "serialized_in_plan": False}
    plan = fake_plan(tmp_path, plugin, b"engine header" + library.read_bytes() + b"more engine")
    with pytest.raises(BackendError, match=r"model\.plan: carries its TensorRT plugin library"):
        Debander.open(plan)
    cubin = b"\x7fELF\x02\x01\x01" + bytes(9) + (3).to_bytes(2, "little") + (190).to_bytes(2, "little")
    plan = fake_plan(tmp_path, plugin, b"engine header" + cubin + b"more engine")
    with pytest.raises(BackendError) as later:  # device code: it goes on to look for a GPU
        Debander.open(plan)
    assert "allow-embedded-plugin" not in str(later.value)


def test_bdinn_run_says_how_to_allow_it(tmp_path):
    plan = fake_plan(
        tmp_path, {"implementation": "/build/libbdinn_trt_plugin.so", "serialized_in_plan": True}
    )
    picture = Path(__file__).parent / "data" / "sky-gradient.png"
    result = CliRunner().invoke(main, [str(plan), str(picture), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 1 and "--allow-embedded-plugin" in result.output
    assert not (tmp_path / "out.png").exists()


def test_a_sidecar_nested_thousands_deep_is_one_line(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    (tmp_path / "model.plan.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BackendError, match=r"model\.plan\.json: unreadable engine sidecar \(RecursionError"):
        Debander.open(plan)


def test_the_sidecar_is_read_before_the_plan_and_only_if_small(tmp_path):
    """Any file named .plan was read whole before its sidecar was looked for: 20 s and 2 GB for
    'sidecar missing'. A sparse file of 64 GB stands in here: reading it would not end well."""
    plan = tmp_path / "model.plan"
    with open(plan, "wb") as big:
        big.truncate(64 << 30)
    with pytest.raises(BackendError, match=r"model\.plan: its sidecar model\.plan\.json is missing"):
        Debander.open(plan)
    with open(tmp_path / "model.plan.json", "wb") as sidecar:  # sparse: a GB of JSON took gigabytes
        sidecar.truncate(17 << 20)
    with pytest.raises(
        BackendError, match=r"model\.plan\.json: over 16 MB, not a sidecar bdinn-export writes"
    ):
        Debander.open(plan)


def test_bdinn_eval_takes_the_same_plugin_options(tmp_path, paired_dirs):
    """bdinn-eval's refusal said to pass --allow-embedded-plugin, which it did not take."""
    from bdinn.train.evaluate import main as evaluate

    embedded = {"implementation": "/build/libbdinn_trt_plugin.so", "serialized_in_plan": True}
    plan = fake_plan(tmp_path, embedded)
    args = [str(plan), "--pairs", *map(str, paired_dirs), "--no-baselines"]
    refused = CliRunner().invoke(evaluate, args)
    assert refused.exit_code == 1 and "pass --allow-embedded-plugin" in refused.output
    allowed = CliRunner().invoke(evaluate, [*args, "--allow-embedded-plugin"])
    assert allowed.exit_code == 1 and "allow-embedded-plugin" not in allowed.output  # on to the GPU check
    (tmp_path / "cpp").mkdir()
    plain = fake_plan(tmp_path / "cpp", {"implementation": "/build/libbdinn_trt_plugin.so"})
    given = [str(plain), *args[1:], "--plugin-library", str(tmp_path / "absent.so")]
    library = CliRunner().invoke(evaluate, given)
    assert library.exit_code == 1 and "absent.so: plugin library not found" in library.output
