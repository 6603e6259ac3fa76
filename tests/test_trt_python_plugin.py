"""The Python plugin inside the real TensorRT-RTX ONNX parser and builder, on a CPU-only machine.

TensorRT-RTX builds engines for a target compute capability without a GPU; running them needs
one, so these tests stop at the serialised plan.
"""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install '.[onnx]'")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bdinn.plugins.trt_plugin import (  # noqa: E402
    DEFAULT_FIELDS,
    FIELDS,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    check_fields,
    plugin_classes,
    register_python_plugin,
)
from bdinn.runtime.tensorrt import (  # noqa: E402
    TensorRTUnavailable,
    error_logger,
    load_plugin_library,
    load_tensorrt,
)

try:
    TRT = load_tensorrt("tensorrt-rtx")
except TensorRTUnavailable as exc:
    pytest.skip(f"TensorRT-RTX is not installed ({exc})", allow_module_level=True)


def two_node_graph(
    dtype: np.dtype, dilation: tuple[int, int] = (2, 1), channels: int = 8, **attributes: Any
) -> bytes:
    """x -> BandedDeformConv2d -> BandedDeformConv2d, sharing one geometry input; dynamic H, W;
    `attributes` replace the nodes' own."""
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    rng = np.random.default_rng(0)
    nodes, weights = [], []
    for i in range(2):
        weights += [
            numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 5)).astype(dtype), f"w{i}"),
            numpy_helper.from_array(rng.standard_normal(channels).astype(dtype), f"b{i}"),
        ]
        nodes.append(
            helper.make_node(
                PLUGIN_NAME, ["x" if i == 0 else "y0", "g", f"w{i}", f"b{i}"], [f"y{i}"], name=f"bdc{i}",
                domain=PLUGIN_NAMESPACE,
                **{"kernel_h": 3, "kernel_w": 5, "dilation_h": dilation[0], "dilation_w": dilation[1],
                   **attributes},
            )
        )  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "two_banded_convs",
        [helper.make_tensor_value_info("x", elem, [1, channels, "h", "w"]),
         helper.make_tensor_value_info("g", elem, [1, 4, "h", "w"])],
        [helper.make_tensor_value_info("y1", elem, [1, channels, "h", "w"])],
        weights,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("bdinn", 1)]
    )
    return model.SerializeToString()


def parse(model: bytes):
    trt = TRT.module
    register_python_plugin(trt)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(model)
    assert ok, [parser.get_error(i).desc() for i in range(parser.num_errors)]
    return builder, network


def build_for_sm89(builder, network) -> bytes:
    trt = TRT.module
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM89, 0)
    profile = builder.create_optimization_profile()
    for name, channels in (("x", 8), ("g", 4)):
        profile.set_shape(name, (1, channels, 16, 16), (1, channels, 64, 96), (1, channels, 256, 256))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    return bytes(plan)


def test_parser_symlink_for_plugin_nodes_exists():
    import tensorrt_rtx_libs

    folder = Path(next(iter(tensorrt_rtx_libs.__path__)))
    assert (folder / "libtensorrt_rtx.so").resolve() == (folder / "libtensorrt_rtx.so.1").resolve()


@pytest.mark.parametrize("stale_link", [False, True])
def test_registering_the_plugin_on_a_fresh_install_makes_the_parser_link(tmp_path, stale_link):
    """A fresh TensorRT-RTX install has no libtensorrt_rtx.so, and the parser aborted the process on
    a plugin node when the plugin was registered directly (the documented Python API) rather than
    through load_tensorrt. The fresh install is a copy of the libs package without the link. A link
    an earlier install left dangling (pip does not know it) was kept, and the parser aborted."""
    import subprocess
    import sys

    import tensorrt_rtx_libs

    installed = Path(next(iter(tensorrt_rtx_libs.__path__)))
    fresh = tmp_path / "tensorrt_rtx_libs"
    fresh.mkdir()
    (fresh / "__init__.py").write_text((installed / "__init__.py").read_text())  # loads from its own folder
    for library in installed.glob("*.so.1"):
        (fresh / library.name).symlink_to(library)
    if stale_link:
        (fresh / "libtensorrt_rtx.so").symlink_to("libtensorrt_rtx.so.0")
    graph = tmp_path / "graph.onnx"
    graph.write_bytes(two_node_graph(np.float32))
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import tensorrt_rtx as trt\n"
        "from bdinn.plugins.trt_plugin import register_python_plugin\n"
        "register_python_plugin(trt)\n"
        "logger = trt.Logger(trt.Logger.ERROR)\n"
        "builder = trt.Builder(logger)\n"
        "network = builder.create_network(0)\n"
        "parser = trt.OnnxParser(network, logger)\n"
        f"print('parsed', parser.parse_from_file({str(graph)!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "parsed True"
    assert (fresh / "libtensorrt_rtx.so").resolve() == (installed / "libtensorrt_rtx.so.1").resolve()


def test_a_read_only_install_runs_plans_and_refuses_only_plugin_graph_builds(tmp_path):
    """Where TensorRT-RTX's folder cannot take the parser's link (a read-only site-packages in a
    container), loading TensorRT and registering the plugin, all a plan needs to run, go on, and
    so do builds of graphs without plugin nodes; building a plugin graph is refused in one line
    before the export (without the link the parser aborts the process)."""
    import subprocess
    import sys

    import tensorrt_rtx_libs

    installed = Path(next(iter(tensorrt_rtx_libs.__path__)))
    fresh = tmp_path / "tensorrt_rtx_libs"
    fresh.mkdir()
    (fresh / "__init__.py").write_text((installed / "__init__.py").read_text())
    for library in installed.glob("*.so.1"):
        (fresh / library.name).symlink_to(library)
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import errno, os\n"
        "def refused(*args): raise PermissionError(errno.EROFS, 'Read-only file system')\n"
        "os.symlink = refused  # what a read-only mount answers (root would pass chmod)\n"
        "from bdinn.export.engine import EngineSettings, preflight\n"
        "from bdinn.plugins.trt_plugin import register_python_plugin\n"
        "from bdinn.runtime.tensorrt import TensorRTUnavailable, load_tensorrt\n"
        "register_python_plugin(load_tensorrt('tensorrt-rtx').module)\n"
        "os.environ['BDINN_TENSORRT'] = 'tensorrt-rtx'\n"
        "print('gridsample', preflight(EngineSettings(targets=('sm89',)), 'gridsample').flavour)\n"
        "try:\n    preflight(EngineSettings(targets=('sm89',)), 'plugin')\n"
        "except TensorRTUnavailable as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    gridsample, refused = done.stdout.splitlines()
    assert gridsample == "gridsample tensorrt-rtx"
    assert refused == (
        f"{fresh / 'libtensorrt_rtx.so'}: cannot create it (Read-only file system); TensorRT-RTX's ONNX "
        "parser needs it to load plugins: run `ln -s libtensorrt_rtx.so.1 "
        f"{fresh / 'libtensorrt_rtx.so'}` once as the owner of that folder"
    )
    assert not (fresh / "libtensorrt_rtx.so").exists()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_plugin_graph_parses_and_builds_for_sm89(dtype):
    builder, network = parse(two_node_graph(dtype))
    trt = TRT.module
    plugins = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.PLUGIN_V3:
            layer.__class__ = trt.IPluginV3Layer
            plugins.append(layer.plugin)
    assert len(plugins) == 2
    # ONNX attributes reached create_plugin (non-default dilation).
    assert [p.values for p in plugins] == [
        {"kernel_h": 3, "kernel_w": 5, "dilation_h": 2, "dilation_w": 1}
    ] * 2
    assert network.get_output(0).dtype == (trt.DataType.HALF if dtype == np.float16 else trt.DataType.FLOAT)
    plan = build_for_sm89(builder, network)
    assert len(plan) > 8 * 8 * 15 * 2 * np.dtype(dtype).itemsize  # at least the weights
    # The plan records both plugin layers with their name, namespace and serialised fields.
    assert plan.count(PLUGIN_NAME.encode()) >= 2 and plan.count(PLUGIN_NAMESPACE.encode()) >= 2
    assert all(plan.count(field.encode()) >= 2 for field in FIELDS)


def test_the_fields_a_plugin_serialises_stay_as_they_are_until_tensorrt_reads_them():
    """The collection pointed into arrays made for the call and freed at its end: any allocation
    before TensorRT copied them (another thread's) changed the kernel or dilation in the plan."""
    plugin_class, _ = plugin_classes(TRT.module)
    plugin = plugin_class({"kernel_h": 3, "kernel_w": 5, "dilation_h": 1, "dilation_w": 2})
    collection = plugin.get_fields_to_serialize()  # TensorRT reads it while it holds the plugin
    taken = [np.full(1, 77, np.int32) for _ in range(256)]  # reuses freed memory of that size
    assert [int(np.asarray(field.data).reshape(-1)[0]) for field in collection] == [3, 5, 1, 2]
    assert len(taken) == 256


def test_output_shape_follows_weight_and_input():
    _, network = parse(two_node_graph(np.float32, channels=8))
    assert tuple(network.get_output(0).shape) == (1, 8, -1, -1)


def test_a_kernel_as_wide_as_the_kernels_address_is_refused():
    """The C++ creator refuses a kernel side of 2^24 or more (bdinn_extents_fit); the Python one
    took it, since its reach test multiplies half the side by the dilation."""
    with pytest.raises(ValueError, match="beyond 2\\^24 pixels"):
        check_fields({"kernel_h": 2**24 + 1, "kernel_w": 1, "dilation_h": 1, "dilation_w": 1})
    check_fields({"kernel_h": 2**24 - 1, "kernel_w": 1, "dilation_h": 1, "dilation_w": 1})


@pytest.mark.parametrize("dilation", [(0, 1), (1, -2), (1, 2**25), (1, 2**40)])
def test_a_bad_dilation_is_refused_when_parsed(dilation):
    """The C++ creator refuses dilations under 1, and kernels reaching 2^24 pixels or more (beyond
    what the kernels address); the Python one built plans that failed only when they first ran on a
    GPU. Now the parser fails, on this CPU-only machine."""
    trt = TRT.module
    register_python_plugin(trt)
    logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse(two_node_graph(np.float32, dilation=dilation))
    errors = " ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
    assert "Could not create the plugin" in errors


@pytest.mark.parametrize("attribute", [{"dilation_w": "2"}, {"dilation_h": 1.5}, {"kernel_w": 5.9}])
def test_an_attribute_that_is_not_an_integer_is_refused_when_parsed(attribute):
    """The C++ creator refuses them; the Python one read a string's first byte ("2" became a
    dilation of 50) and cut floats down, so the two plugins disagreed on one graph."""
    trt = TRT.module
    register_python_plugin(trt)
    logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse(two_node_graph(np.float32, **attribute))
    errors = " ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
    assert "Could not create the plugin" in errors


def test_a_weight_that_does_not_fit_the_kernel_fails_the_parse(capfd):
    """Checked when the parser asks for output shapes; the check used to raise while the engine was
    built, and TensorRT-RTX 1.7 corrupts its heap and aborts the process when configure_plugin raises."""
    model = onnx.load_from_string(two_node_graph(np.float32))
    for node in model.graph.node:
        next(a for a in node.attribute if a.name == "kernel_w").i = 3  # the weights are 3x5
    trt = TRT.module
    register_python_plugin(trt)
    logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse(model.SerializeToString())
    assert "Invalid Node - bdc0" in " ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
    assert (
        "BandedDeformConv2d: weight kernel does not match the attributes kernel_h=3, kernel_w=3; "
        "got x [1,8,?,?], geometry [1,4,?,?], weight [8,8,3,5], bias [8]"
    ) in capfd.readouterr().err


def one_node_graph(geometry: int, weight: tuple[int, ...], bias: int) -> bytes:
    """x [1,8,h,w] -> BandedDeformConv2d with a geometry of `geometry` channels, weight and bias."""
    rng = np.random.default_rng(0)
    node = helper.make_node(
        PLUGIN_NAME, ["x", "g", "w", "b"], ["y"], name="bdc", domain=PLUGIN_NAMESPACE, kernel_h=3, kernel_w=5
    )
    graph = helper.make_graph(
        [node],
        "one_banded_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "h", "w"]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, geometry, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight[0], "h", "w"])],
        [numpy_helper.from_array(rng.standard_normal(weight).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(bias).astype(np.float32), "b")],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("bdinn", 1)]
    )
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("geometry", "weight", "bias", "problem"),
    [
        (3, (4, 8, 3, 5), 4, "geometry must have 4 channels (cos, sin, sx, sy)"),
        (4, (4, 6, 3, 5), 4, "weight must have as many input channels as x"),
        (4, (4, 8, 3, 5), 7, "bias must have one value per output channel"),
    ],
)
def test_operands_that_do_not_fit_x_fail_the_parse(capfd, geometry, weight, bias, problem):
    """The C++ plugin refused these; the Python one built engines whose kernels would have read past
    the geometry, weight or bias on a GPU."""
    trt = TRT.module
    register_python_plugin(trt)
    logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse(one_node_graph(geometry, weight, bias))
    assert f"BandedDeformConv2d: {problem}; got x [1,8,?,?]" in capfd.readouterr().err


def test_a_plugin_library_beside_the_python_plugin_is_refused_saying_so(tmp_path):
    """TensorRT refuses a second creator of one name: with the Python plugin registered, loading the
    C++ library said only "built for another version?"."""
    register_python_plugin(TRT.module)
    library = tmp_path / "libbdinn_trt_plugin.so"
    library.write_bytes(b"not a library")
    problem = load_plugin_library(TRT.module, library)
    assert problem is not None and problem.startswith("TensorRT could not load this plugin library")
    assert "a bdinn::BandedDeformConv2d plugin is registered in this process already" in problem


def test_run_time_sizes_that_do_not_fit_are_refused_before_the_kernels_run():
    """Sizes a foreign graph leaves dynamic are known only when the engine runs: the plugin checks
    them before it launches the kernels (addresses 0 here: nothing may be read). An empty output
    launches nothing (it tried, and the kernels refuse empty extents)."""
    plugin_class, _ = plugin_classes(TRT.module)
    plugin = plugin_class(dict(DEFAULT_FIELDS))

    def desc(shape: tuple[int, ...]):
        described = TRT.module.PluginTensorDesc()
        described.dims, described.type = TRT.module.Dims(shape), TRT.module.DataType.FLOAT
        return described

    inputs = [desc((1, 8, 16, 16)), desc((1, 4, 16, 20)), desc((4, 8, 3, 5)), desc((4,))]
    with pytest.raises(ValueError, match="geometry must match x in N, H and W; got x \\[1,8,16,16\\]"):
        plugin.enqueue(inputs, [desc((1, 4, 16, 16))], [0, 0, 0, 0], [0], 0, 0)
    for n, h, o in ((0, 16, 4), (1, 0, 4), (1, 16, 0)):  # an empty output: no launch, as in C++
        shapes = [(n, 8, h, 16), (n, 4, h, 16), (o, 8, 3, 5), (o,)]
        assert (
            plugin.enqueue([desc(s) for s in shapes], [desc((n, o, h, 16))], [0, 0, 0, 0], [0], 0, 0) is None
        )


def test_operands_that_fit_parse():
    _, network = parse(one_node_graph(4, (4, 8, 3, 5), 4))
    assert tuple(network.get_output(0).shape) == (1, 4, -1, -1)


def test_the_error_logger_keeps_tensorrts_errors_off_standard_output(capfd):
    """trt.Logger printed them to standard output, into `bdinn-export --json`'s JSON and a video
    that `bdinn-run -o -` writes there; the messages that say why now hold them."""
    trt = TRT.module
    logger = error_logger(trt)
    assert trt.Runtime(logger).deserialize_cuda_engine(b"not a plan" * 10) is None
    assert any("Serialization" in error for error in logger.errors)
    assert all("\n" not in error for error in logger.errors)
    assert capfd.readouterr().out == ""
