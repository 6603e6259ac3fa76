"""The C++ TensorRT plugin (plugins/tensorrt): same identity as the Python plugin, and it builds.

The identity checks read the C++ source and always run. Building needs TensorRT headers, which
cannot be committed: set TENSORRT_INCLUDE_DIR to a folder holding NvInferRuntime.h (TensorRT >= 10)
to run those tests; CI skips them. With TensorRT-RTX installed, the built library is also loaded into
its registry, ONNX parser and builder (SM89 plans, no GPU needed), and its plans are compared with the
Python plugin's. No test here needs a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bdinn.plugins.trt_plugin import (
    DEFAULT_FIELDS,
    FIELDS,
    MAX_EXTENT,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
)

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
TRT_DIR = PLUGINS / "tensorrt"
PLUGIN_CPP = TRT_DIR / "BandedDeformConv2dPlugin.cpp"
PLUGIN_H = TRT_DIR / "BandedDeformConv2dPlugin.h"
ENTRY_POINTS = {"getCreators", "setLoggerFinder"}


def _one(pattern: str, text: str, what: str) -> re.Match:
    matches = list(re.finditer(pattern, text))
    assert len(matches) == 1, f"expected one definition of {what}, found {len(matches)}"
    return matches[0]


def _string_literal(name: str) -> str:
    return _one(rf'constexpr char {name}\[\] = "([^"\\]*)";', PLUGIN_CPP.read_text(), name).group(1)


def test_cpp_plugin_identity_matches_python_plugin():
    assert _string_literal("kPluginName") == PLUGIN_NAME == "BandedDeformConv2d"
    assert _string_literal("kPluginVersion") == PLUGIN_VERSION == "1"
    assert _string_literal("kPluginNamespace") == PLUGIN_NAMESPACE == "bdinn"


def test_python_plugins_extent_bound_is_the_c_abis():
    """The Python plugin's copy of the kernels' extent bound, which it checks at build time."""
    header = (PLUGINS / "csrc" / "banded_deform_conv_api.h").read_text()
    assert int(_one(r"#define BDINN_MAX_EXTENT (\d+)", header, "BDINN_MAX_EXTENT").group(1)) == MAX_EXTENT


def test_cpp_plugin_fields_match_python_plugin():
    source = PLUGIN_CPP.read_text()
    names = _one(r"constexpr char const\* kFieldNames\[kNbFields\] = \{([^}]*)\};", source, "kFieldNames")
    assert tuple(re.findall(r'"([^"\\]*)"', names.group(1))) == FIELDS
    defaults = _one(r"constexpr Attributes kFieldDefaults = \{([^}]*)\};", source, "kFieldDefaults")
    assert [int(v) for v in defaults.group(1).split(",")] == [DEFAULT_FIELDS[f] for f in FIELDS]
    count = _one(r"constexpr int32_t kNbFields = (\d+);", PLUGIN_H.read_text(), "kNbFields")
    assert int(count.group(1)) == len(FIELDS)
    # Serialised (and declared to the ONNX parser) as single INT32 values, like the Python plugin.
    assert source.count("PluginFieldType::kINT32, 1)") == 2


def test_cpp_plugin_export_list():
    text = re.sub(r"/\*.*?\*/", "", (TRT_DIR / "exports.map").read_text(), flags=re.S)
    exported = re.findall(r"global:\s*([^}]*?)\s*local:", text, re.S)[0]
    assert set(exported.replace(";", " ").split()) == ENTRY_POINTS
    assert re.search(r"local:\s*\*;", text)


def test_cpp_plugin_files_ship_with_the_package():
    # test_packaging checks that every one of them lands in the installed package.
    assert {p.name for p in TRT_DIR.iterdir() if p.is_file()} >= {
        "CMakeLists.txt", "README.md", "exports.map", PLUGIN_CPP.name, PLUGIN_H.name, "plugin_library.cpp"
    }  # fmt: skip


# ---- Configuring (needs nvcc and CMake, not TensorRT: header stand-ins carry only a version) -------


def _fake_trt_root(folder: Path, version: str) -> Path:
    """A folder CMake takes for a TensorRT install of `version`: configuring reads no more of it."""
    (folder / "include").mkdir(parents=True)
    (folder / "include" / "NvInferRuntime.h").write_text("")
    major, minor, patch = version.split(".")
    (folder / "include" / "NvInferVersion.h").write_text(
        f"#define TRT_MAJOR_ENTERPRISE {major}\n#define TRT_MINOR_ENTERPRISE {minor}\n"
        f"#define TRT_PATCH_ENTERPRISE {patch}\n"
    )
    return folder


@pytest.mark.slow
def test_configure_follows_the_tensorrt_root_it_is_given(tmp_path):
    """Another TENSORRT_ROOT given to a build folder kept the first root's cached headers (a plugin
    built for the wrong major version), and a relative root was 'not found' though it exists."""
    for tool in ("cmake", "nvcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found on PATH: the TensorRT plugin cannot be configured")
    _fake_trt_root(tmp_path / "trt-a", "10.16.1")
    _fake_trt_root(tmp_path / "trt-b", "11.1.0")
    env = {**os.environ, "CUDAARCHS": "89-real"}
    said = []
    for root in ("trt-a", "trt-b"):  # relative to the folder cmake runs in
        proc = _run(
            ["cmake", "-S", str(PLUGINS), "-B", "build", f"-DTENSORRT_ROOT={root}"], cwd=tmp_path, env=env
        )
        said += re.findall(r"TensorRT plugin: TensorRT ([\d.]+) headers in (\S+?)/?;", proc.stdout)
    assert said == [
        ("10.16.1", str(tmp_path / "trt-a" / "include")),
        ("11.1.0", str(tmp_path / "trt-b" / "include")),
    ]
    # A folder an earlier bdinn configured keeps its cached search's result: dropped for a new root.
    (tmp_path / "old-cache.cmake").write_text(
        f'set(TENSORRT_INCLUDE_DIR "{tmp_path}/trt-a/include" CACHE PATH '
        '"Folder holding the TensorRT headers (NvInferRuntime.h)")\n'
    )
    old = ["cmake", "-C", "old-cache.cmake", "-S", str(PLUGINS), "-B", "old", "-DTENSORRT_ROOT=trt-b"]
    proc = _run(old, cwd=tmp_path, env=env)
    assert "TensorRT plugin: TensorRT 11.1.0 headers in" in proc.stdout
    # The root given is the one searched: another install on CMAKE_PREFIX_PATH (a conda or NGC
    # environment sets it) came first, and a root without headers fell back to the system's.
    prefixed = {**env, "CMAKE_PREFIX_PATH": str(tmp_path / "trt-a")}
    proc = _run(
        ["cmake", "-S", str(PLUGINS), "-B", "prefixed", "-DTENSORRT_ROOT=trt-b"], cwd=tmp_path, env=prefixed
    )
    assert "TensorRT plugin: TensorRT 11.1.0 headers in" in proc.stdout
    (tmp_path / "no-headers" / "lib").mkdir(parents=True)
    bare = ["cmake", "-S", str(PLUGINS), "-B", "bare", "-DTENSORRT_ROOT=no-headers"]
    proc = subprocess.run(bare, cwd=tmp_path, env=prefixed, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "TensorRT headers not found" in proc.stderr, proc.stdout + proc.stderr


# ---- Building (needs TensorRT headers and nvcc) ---------------------------------------------------


def _trt_include_dir() -> Path:
    env = os.environ.get("TENSORRT_INCLUDE_DIR")
    if not env:
        pytest.skip(
            "set TENSORRT_INCLUDE_DIR to TensorRT >= 10 headers (the folder with NvInferRuntime.h) to build "
            "the C++ plugin; the headers cannot be committed, so CI skips this"
        )
    include = Path(env)
    if not (include / "NvInferRuntime.h").is_file():
        pytest.fail(f"TENSORRT_INCLUDE_DIR={env} holds no NvInferRuntime.h")
    for tool in ("cmake", "nvcc", "nm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found on PATH: the C++ plugin cannot be built and inspected")
    return include


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def plugin_library(tmp_path_factory) -> Path:
    include = _trt_include_dir()
    build = tmp_path_factory.mktemp("trt_plugin_build")
    # One architecture keeps the kernel compile short; CUDAARCHS overrides it.
    archs = os.environ.get("CUDAARCHS", "89-real")
    _run([
        "cmake", "-S", str(PLUGINS), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
        f"-DTENSORRT_INCLUDE_DIR={include}", f"-DCMAKE_CUDA_ARCHITECTURES={archs}",
    ])  # fmt: skip
    _run(["cmake", "--build", str(build), "--parallel", str(os.cpu_count() or 1)])
    manifest = dict(
        line.split("=", 1) for line in (build / "bdinn_libraries.txt").read_text().splitlines() if "=" in line
    )
    assert set(manifest) == {"cpu", "cuda", "tensorrt"}
    library = Path(manifest["tensorrt"])
    assert library.name == "libbdinn_trt_plugin.so"
    return library


@pytest.mark.slow
def test_plugin_library_builds_and_exports_only_the_entry_points(plugin_library):
    assert plugin_library.is_file() and plugin_library.stat().st_size > 0
    symbols = _run(["nm", "-D", "--defined-only", str(plugin_library)]).stdout.split()
    # "ADDRESS T NAME" rows: exactly TensorRT's entry points, nothing of the kernels' C ABI.
    assert set(symbols[2::3]) == ENTRY_POINTS
    assert set(symbols[1::3]) == {"T"}
    undefined = _run(["nm", "-D", "--undefined-only", str(plugin_library)]).stdout
    assert "nvinfer" not in undefined.lower() and "getPluginRegistry" not in undefined


RTX_SCRIPT = textwrap.dedent(
    """
    import hashlib
    import sys
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from bdinn.runtime.tensorrt import load_tensorrt

    trt = load_tensorrt("tensorrt-rtx").module
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    registry = trt.get_plugin_registry()
    library = sys.argv[1] != "python"
    if library:
        handle = registry.load_library(sys.argv[1])
        assert handle is not None, "load_library failed"
    else:
        from bdinn.plugins.trt_plugin import register_python_plugin

        register_python_plugin(trt)
    creator = registry.get_creator("BandedDeformConv2d", "1", "bdinn")
    print("fields", [f.name for f in creator.field_names])

    def model(dtype, bias, kernel_w=5, geometry_channels=4):
        elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
        rng = np.random.default_rng(0)
        inits = [numpy_helper.from_array(rng.standard_normal((8, 8, 3, kernel_w)).astype(dtype), "w")]
        if bias:
            inits.append(numpy_helper.from_array(rng.standard_normal(8).astype(dtype), "b"))
        node = helper.make_node(
            "BandedDeformConv2d", ["x", "g", "w"] + (["b"] if bias else []), ["y"], name="bdc",
            domain="bdinn", kernel_h=3, kernel_w=5, dilation_h=2, dilation_w=1)
        graph = helper.make_graph(
            [node], "g",
            [helper.make_tensor_value_info("x", elem, [1, 8, "h", "w"]),
             helper.make_tensor_value_info("g", elem, [1, geometry_channels, "h", "w"])],
            [helper.make_tensor_value_info("y", elem, [1, 8, "h", "w"])], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                       helper.make_opsetid("bdinn", 1)])

    def build(proto):
        network = builder.create_network(0)
        if not trt.OnnxParser(network, logger).parse(proto.SerializeToString()):
            return None, None
        out = network.get_output(0)
        config = builder.create_builder_config()
        config.num_compute_capabilities = 1
        config.set_compute_capability(trt.ComputeCapability.SM89, 0)
        profile = builder.create_optimization_profile()
        for name, channels in (("x", 8), ("g", 4)):
            profile.set_shape(name, (1, channels, 16, 16), (1, channels, 64, 96), (1, channels, 256, 256))
        config.add_optimization_profile(profile)
        return (tuple(out.shape), str(out.dtype)), bytes(builder.build_serialized_network(network, config))

    for dtype in (np.float32, np.float16):
        for bias in (True, False):
            output, plan = build(model(dtype, bias))
            print("plan", np.dtype(dtype).name, bias, output, hashlib.sha256(plan).hexdigest(),
                  plan.count(b"BandedDeformConv2d"), plan.count(b"bdinn"), plan.count(b"dilation_h"))
    if library:
        print("bad-kernel", build(model(np.float32, True, kernel_w=3))[1] is None)
        print("bad-geometry", build(model(np.float32, True, geometry_channels=3))[1] is None)
        registry.deregister_library(handle)
        print("deregistered", registry.get_creator("BandedDeformConv2d", "1", "bdinn") is None)
    """
)


def _rtx_plans(plugin: str) -> tuple[dict[tuple[str, str], str], subprocess.CompletedProcess]:
    """Plans built by TensorRT-RTX with `plugin` (a library path, or "python"), in a subprocess so
    that its plugin registry meets no other bdinn::BandedDeformConv2d creator."""
    proc = _run([sys.executable, "-c", RTX_SCRIPT, plugin], timeout=600)
    lines = proc.stdout.splitlines()
    assert f"fields {list(FIELDS)}" in lines
    plans = {}
    for line in lines:
        if match := re.fullmatch(r"plan (\w+) (\w+) (\(.*\)) ([0-9a-f]{64}) (\d+) (\d+) (\d+)", line):
            dtype, bias, output, digest, *counts = match.groups()
            expected_type = "DataType.HALF" if dtype == "float16" else "DataType.FLOAT"
            assert output == f"((1, 8, -1, -1), '{expected_type}')", line
            # The plan names the plugin and its namespace, and carries its serialised fields.
            assert all(int(c) >= 1 for c in counts), line
            plans[dtype, bias] = digest
    assert len(plans) == 4, proc.stdout
    return plans, proc


@pytest.mark.slow
def test_plugin_library_builds_engines_in_tensorrt_rtx(plugin_library):
    """The C++ plugin inside TensorRT-RTX's registry, ONNX parser and builder, on a CPU-only machine;
    its plans are byte for byte those of the Python plugin."""
    pytest.importorskip("onnx", reason="needs the onnx extra")
    from bdinn.runtime.tensorrt import TensorRTUnavailable, load_tensorrt

    try:
        load_tensorrt("tensorrt-rtx")
    except TensorRTUnavailable as exc:
        pytest.skip(f"TensorRT-RTX is not installed ({exc})")
    cpp_plans, proc = _rtx_plans(str(plugin_library))
    lines = proc.stdout.splitlines()
    # Shape errors are caught while parsing (getOutputShapes) and reported with the layer's name.
    assert "bad-kernel True" in lines and "bad-geometry True" in lines
    assert "deregistered True" in lines
    assert "'bdc': getOutputShapes: weight kernel does not match the attributes kernel_h=3, kernel_w=5" in (
        proc.stderr + proc.stdout
    )
    python_plans, _ = _rtx_plans("python")
    assert cpp_plans == python_plans
