"""What a user's site-packages gets: only the bdinn namespace, and a runtime that needs no torch."""

import importlib.metadata
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


def test_only_the_bdinn_namespace_is_installed():
    # Look in site-packages itself: an in-tree build leaves a bdinn.egg-info in the checkout.
    site = sysconfig.get_paths()["purelib"]
    dist = next(iter(importlib.metadata.distributions(name="bdinn", path=[site])), None)
    if dist is None:
        pytest.skip(f"bdinn is not installed in {site}")
    if '"editable": true' in (dist.read_text("direct_url.json") or "") or dist.read_text("RECORD") is None:
        pytest.skip("an editable install maps the source folders; CI checks a regular install")
    files = dist.files
    assert files
    top = {f.parts[0] for f in files if not f.parts[0].startswith("..")}
    assert {t for t in top if not t.startswith("bdinn")} == set()
    assert {"train", "export", "runtime", "plugins"}.isdisjoint(top)
    scripts = {
        e.name
        for e in importlib.metadata.entry_points(group="console_scripts")
        if e.value.startswith("bdinn.")
    }
    assert {"bdinn-train", "bdinn-export", "bdinn-run", "bdinn-bench", "bdinn-eval"} <= scripts
    # Every module of the source tree, and the bundled model, made it into the wheel.
    installed = {"/".join(f.parts) for f in files}
    root = Path(__file__).parents[1]
    for folder in ("train", "export", "plugins", "runtime"):
        for module in (root / folder).rglob("*.py"):
            assert f"bdinn/{module.relative_to(root)}" in installed, module
    for name in ("default.safetensors", "default.json", "default.onnx"):
        assert f"bdinn/runtime/models/{name}" in installed
    # The kernel and plugin sources, so that users build them where they run.
    for source in [root / "plugins/CMakeLists.txt", *(root / "plugins").glob("*/*.*")]:
        assert f"bdinn/{source.relative_to(root)}" in installed, source


def test_runtime_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; import bdinn.runtime, bdinn.runtime.run_cli, "
        "bdinn.runtime.bench, bdinn.runtime.video, bdinn.runtime.cambi, bdinn.runtime.backends.onnx_backend, "
        "bdinn.runtime.backends.tensorrt_backend"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["train", "export", "evaluate"])
def test_commands_that_need_torch_say_so_without_it(command):
    code = f"import sys; sys.modules['torch'] = None; import bdinn.runtime.torch_commands as c; c.{command}()"
    result = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "needs PyTorch: pip install 'bdinn[train,onnx]'" in line
    assert "bdinn-run and bdinn-bench work without it" in line


def test_commands_that_need_torch_run_with_it():
    code = "import sys; sys.argv[0] = 'bdinn-export'; import bdinn.runtime.torch_commands as c; c.export()"
    result = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--fp16" in result.stdout, result.stderr


@pytest.mark.parametrize(
    "command, entry",
    [
        ("bdinn-run", "bdinn.runtime.run_cli:main"),
        ("bdinn-bench", "bdinn.runtime.bench:main"),
        ("bdinn-train", "bdinn.runtime.torch_commands:train"),
        ("bdinn-export", "bdinn.runtime.torch_commands:export"),
        ("bdinn-eval", "bdinn.runtime.torch_commands:evaluate"),
    ],
)
def test_every_command_says_a_usage_mistake_in_one_line(command, entry):
    module, function = entry.split(":")
    code = f"import sys; sys.argv[0] = '{command}'; import {module} as m; m.{function}()"
    result = subprocess.run([sys.executable, "-c", code, "--qqq"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"{command}: error: No such option '--qqq' (see {command} --help)\n"
    near = subprocess.run([sys.executable, "-c", code, "--hlep"], capture_output=True, text=True)
    assert near.returncode == 2
    [line] = near.stderr.splitlines()  # click's suggestion, without a second hint
    assert line.startswith(f"{command}: error: No such option '--hlep'.")
    assert "Did you mean" in line and "'--help'" in line and "see" not in line
