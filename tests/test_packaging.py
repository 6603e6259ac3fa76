"""What a user's site-packages gets: only the bdinn namespace, and a runtime that needs no torch."""

import importlib.metadata
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


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
    for folder in ("train", "export", "plugins", "runtime"):  # type checkers read the hints
        assert f"bdinn/{folder}/py.typed" in installed
    # The kernel and plugin sources, so that users build them where they run.
    for source in [root / "plugins/CMakeLists.txt", *(root / "plugins").glob("*/*.*")]:
        assert f"bdinn/{source.relative_to(root)}" in installed, source


def test_runtime_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; import bdinn.runtime, bdinn.runtime.run_cli, "
        "bdinn.runtime.bench, bdinn.runtime.video, bdinn.runtime.cambi, bdinn.runtime.backends.onnx_backend, "
        "bdinn.runtime.backends.tensorrt_backend, bdinn.train.evaluate"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["train", "export"])
def test_commands_that_need_torch_say_so_without_it(command):
    code = f"import sys; sys.modules['torch'] = None; import bdinn.runtime.torch_commands as c; c.{command}()"
    result = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "needs PyTorch: pip install '.[train,onnx]' in bdinn's folder" in line
    assert "bdinn-run, bdinn-eval and bdinn-bench work without it" in line


def _without(module: str, command: str, *arguments: object) -> subprocess.CompletedProcess:
    """A command's entry point (a function of torch_commands, or "evaluate": bdinn-eval's own)
    run where `module` cannot be imported."""
    hidden = f"import sys; sys.modules[{module!r}] = None"
    entry = (
        "import bdinn.train.evaluate as t; t.main()"
        if command == "evaluate"
        else (f"import bdinn.runtime.torch_commands as t; t.{command}()")
    )
    code = f"{hidden}; {entry}"
    return subprocess.run([sys.executable, "-c", code, *map(str, arguments)], capture_output=True, text=True)


def test_export_without_the_onnx_extra_says_so():
    """A `[train]`-only install (the README's training set-up) has torch but no onnx: --help was
    a ModuleNotFoundError traceback."""
    result = _without("onnx", "export", "--help")
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("bdinn-export: error: needs the onnx extra (")
    assert line.endswith("pip install '.[onnx]' in bdinn's folder")


@pytest.mark.parametrize(
    ("arguments", "needs"),
    [
        (
            ["--pairs", "BANDED", "CLEAN"],
            "the FFmpeg baselines (deband, gradfun; or pass --no-baselines) needs",
        ),
        (["--clean", DATA, "--degrade", "q5,x264", "--no-baselines"], "codec degradations needs"),
    ],
)
def test_eval_without_pyav_says_so_before_any_work(arguments, needs, paired_dirs):
    """Python 3.10 installs no PyAV: bdinn-eval ran the model on every picture, then ended in a
    traceback at the first baseline or codec."""
    folders = dict(zip(("BANDED", "CLEAN"), paired_dirs, strict=True))
    result = _without("av", "evaluate", *(folders.get(a, a) for a in arguments))
    assert result.returncode == 1 and result.stdout == ""
    install = "pip install '.[video]' in bdinn's folder (Python 3.11 or newer)"
    assert result.stderr.splitlines() == [f"bdinn-eval: error: {needs} PyAV 18.1 or newer: {install}"]


def test_training_on_codec_pairs_without_pyav_says_so(tmp_path):
    result = _without("av", "train", "--clean", DATA, "--steps", "2", "--warmup", "0", "-o", tmp_path / "run")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "bdinn-train: error: codec degradations needs PyAV 18.1 or newer: pip install '.[video]' in bdinn's "
        "folder (Python 3.11 or newer)"
    ]


def test_an_onnx_runtime_that_does_not_import_is_named_as_such():
    """ONNX Runtime 1.18 beside numpy 2 is installed but fails to import: the message said to
    install it, and hid why."""
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from bdinn.runtime.backends.onnx_backend import OnnxBackend\n"
        "try:\n    OnnxBackend('model.onnx')\nexcept Exception as exc:\n    print(exc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout == (
        "model.onnx: ONNX models need ONNX Runtime, and it does not import (import of onnxruntime halted; "
        "None in sys.modules): pip install -U onnxruntime\n"
    )


@pytest.mark.parametrize(
    "module", ["runtime.run_cli", "runtime.bench", "train.cli", "export.cli", "train.evaluate"]
)
def test_every_command_runs_as_a_module(module):
    """`python -m bdinn.runtime.run_cli ...` did nothing and exited 0."""
    command = [sys.executable, "-m", f"bdinn.{module}", "--help"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: python -m bdinn.{module} ")


def test_pyav_18_0_is_refused_in_one_line(monkeypatch):
    import av

    from bdinn.runtime.pyav import require_pyav

    monkeypatch.setattr(av, "__version__", "18.0.0")  # it lacks VideoCodecContext.field_order
    with pytest.raises(ImportError, match=r"^video needs PyAV 18\.1 or newer, and 18\.0\.0 is installed"):
        require_pyav()


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
        ("bdinn-eval", "bdinn.train.evaluate:main"),
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


def test_the_sdist_carries_every_test_module_helper_and_the_licence(tmp_path):
    """tests/video_sources.py, which eight test modules import, was left out: the sdist's tests
    stopped at collection. And the licence pyproject.toml declares had no text in either package."""
    root = Path(__file__).resolve().parents[1]
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(tmp_path / done.stdout.strip().splitlines()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    wanted = {str(path.relative_to(root)) for path in (root / "tests").glob("*.py")}
    assert wanted <= names and "LICENSE" in names
    assert {str(path.relative_to(root)) for path in (root / "tests" / "data").iterdir()} <= names
