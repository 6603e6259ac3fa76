"""ONNX export of every graph: structure, parity with PyTorch, FP16 and uint8 I/O.

Portable graphs run in ONNX Runtime on the CPU; the plugin graph runs in onnx.reference with the
numpy implementation of its custom node.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from common import perturbed_tiny

onnx = pytest.importorskip("onnx", reason="needs the onnx extra")
ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra")
from onnx.reference import ReferenceEvaluator  # noqa: E402

from bdinn.export.onnx_export import export_onnx  # noqa: E402
from bdinn.export.onnx_reference import BandedDeformConv2d as PluginNode  # noqa: E402
from bdinn.runtime.imageio import read_image, to_float  # noqa: E402
from bdinn.runtime.metrics import psnr  # noqa: E402

DATA = Path(__file__).parent / "data"
SIZES = [(64, 96), (37, 53)]
OPS = {"plugin": "bdinn::BandedDeformConv2d", "gridsample": "GridSample", "deformconv": "DeformConv"}


@pytest.fixture(scope="module")
def model():
    return perturbed_tiny()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(graph: str, fp16: bool = False, io: str = "float"):
        key = (graph, fp16, io)
        if key not in cache:
            cache[key] = export_onnx(model, folder / f"{graph}-{fp16}-{io}.onnx", graph, fp16, io)
        return cache[key]

    return get


def run(result, image: np.ndarray) -> np.ndarray:
    if result.graph == "plugin":
        return ReferenceEvaluator(str(result.path), new_ops=[PluginNode]).run(None, {"image": image})[0]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image})[0]


@pytest.mark.parametrize("graph", ["plugin", "gridsample", "deformconv"])
def test_graph_structure(exported, graph):
    result = exported(graph)
    proto = onnx.load(result.path)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == [1, 3] and all(isinstance(d, str) for d in dims[2:])  # dynamic H and W
    out_dims = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == dims  # named as the input's, not the padding's arithmetic
    # One node per banded convolution layer (TINY: 1 BDACB x 4 sub-networks x 2), none of the others.
    assert result.op_counts.get(OPS[graph]) == 8
    assert all(result.op_counts.get(op, 0) == 0 for g, op in OPS.items() if g != graph)
    assert result.op_counts.get("Pad") == 1  # padding to a multiple of 8 lives inside the graph
    assert "bdinn.coarse_pass" not in {p.key for p in proto.metadata_props}  # single pass: 8-px tiles
    assert 0 < result.nodes_final <= result.nodes_exported
    if graph == "plugin":
        node = next(n for n in proto.graph.node if n.op_type == "BandedDeformConv2d")
        assert node.domain == "bdinn"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kernel = {"kernel_h": 3, "kernel_w": 5, "dilation_h": 1, "dilation_w": 1}
        assert attrs == {**kernel, "plugin_namespace": b"bdinn"}  # older TensorRT parsers read it


@pytest.mark.parametrize("graph", ["plugin", "gridsample", "deformconv"])
@pytest.mark.parametrize("size", SIZES)
def test_float32_parity_with_pytorch(model, exported, graph, size):
    y = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(y).numpy()
    out = run(exported(graph), y.numpy())
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1e-4


@pytest.mark.parametrize("graph", ["plugin", "gridsample"])
def test_float16_graph_on_a_real_image(model, exported, graph):
    result = exported(graph, fp16=True)
    proto = onnx.load(result.path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    # Every Conv runs in float16; only the banded convolutions' sampling (and, in the GridSample
    # graph, their small GEMM) stays float32.
    conv_inputs = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    conv_weights = [i for i in proto.graph.initializer if i.name in conv_inputs]
    assert len(conv_weights) == len(conv_inputs) > 20
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in conv_weights)
    image = to_float(read_image(DATA / "sky-gradient.png"))[:96, :128].transpose(2, 0, 1)[None]
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    out = run(result, image.astype(np.float16)).astype(np.float32)
    assert psnr(out, expected) > 45  # FP16 vs FP32 on a real gradient


def test_uint8_io_graph(model, exported):
    result = exported("gridsample", io="uint8")
    proto = onnx.load(result.path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    image = read_image(DATA / "soft-shapes.png")[:75, :101]
    out = run(result, image)
    assert out.shape == image.shape and out.dtype == np.uint8
    with torch.no_grad():
        x = torch.from_numpy(to_float(image).transpose(2, 0, 1)[None])
        expected = np.round(model(x).clamp(0, 1).numpy()[0].transpose(1, 2, 0) * 255)
    difference = out.astype(np.int32) - expected
    assert np.abs(difference).max() <= 1
    assert np.mean(difference == 0) > 0.99  # rounded, not truncated (half a level dark on average)


def test_a_uint8_graph_keeps_the_input_where_the_network_gives_nan(tmp_path):
    """Debander keeps the input where a float graph gives NaN; a uint8 graph rounds inside itself,
    where NaN became 0: black pixels, unseen by the host."""
    broken = perturbed_tiny()
    with torch.no_grad():
        next(p for p in broken.parameters() if p.dim() == 4).fill_(float("nan"))
    image = read_image(DATA / "soft-shapes.png")[:40, :56]
    with torch.no_grad():
        x = torch.from_numpy(to_float(image).transpose(2, 0, 1)[None])
        assert broken(x).isnan().all()
    result = export_onnx(broken, tmp_path / "broken.onnx", "gridsample", False, "uint8")
    assert np.array_equal(run(result, image), image)


def test_the_precision_of_a_uint8_graph_is_recorded_for_the_runtime(exported):
    """uint8 I/O hides the graph's precision from its inputs; bdinn-run and bdinn-bench called an
    --fp16 export fp32 and refused --precision fp16 for it."""
    from bdinn.runtime import Debander
    from bdinn.runtime.backends import BackendError

    result = exported("gridsample", fp16=True, io="uint8")
    props = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    assert props == {"bdinn.precision": "fp16", "bdinn.graph": "gridsample"}
    assert Debander.open(result.path, precision="fp16").backend.precision == "fp16"
    with pytest.raises(
        BackendError, match=r"is fp16, fixed at export; export it again without --fp16 for fp32"
    ):
        Debander.open(result.path, precision="fp32")


def test_rejects_unknown_graph(model, tmp_path):
    with pytest.raises(ValueError, match="graph must be one of"):
        export_onnx(model, tmp_path / "x.onnx", graph="tensorflow")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_paper_configuration_exports_with_parity(tmp_path):
    """The paper-sized network (5.8 M parameters) on a small odd input, through the plugin graph
    its engines are built from; each graph's parity is tested on TINY above (the paper network
    takes more than a minute a graph on a 2-core CPU)."""
    model = perturbed_tiny(config="paper")
    result = export_onnx(model, tmp_path / "paper-plugin.onnx", "plugin")
    assert onnx.load(result.path).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    y = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(y).numpy()
    assert np.abs(run(result, y.numpy()) - expected).max() <= 1e-4


@pytest.mark.parametrize("graph", ["plugin", "gridsample"])
def test_the_coarse_pass_exports_with_parity_at_any_size(tmp_path, graph):
    """A network with the coarse pass: both passes in one graph, sizes still dynamic (16 too, the
    smallest a graph takes), the same output as PyTorch on flat-banded and on odd-sized input."""
    import dataclasses

    from common import TINY

    model = perturbed_tiny(config=dataclasses.replace(TINY, coarse_pass=True))
    result = export_onnx(model, tmp_path / f"coarse-{graph}.onnx", graph)
    assert result.op_counts.get(OPS[graph]) == 16  # every banded layer twice: full and half size
    assert "Resize" not in result.op_counts  # brought back up by a convolution: TensorRT-RTX builds it
    props = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    assert props["bdinn.coarse_pass"] == "true"  # so that the runtime tiles it on its 16-px grid
    if graph == "gridsample":
        from bdinn.runtime.debander import Debander

        with Debander.open(result.path) as deband:
            assert deband.backend.tile_grid == 16
    for size in [(64, 96), (37, 53), (16, 16)]:
        ramp = torch.linspace(0.44, 0.52, size[1]).view(1, 1, 1, -1).expand(1, 3, *size)
        y = torch.round(ramp * 31) / 31  # flat bands: the gate is open
        with torch.no_grad():
            expected = model(y).numpy()
        out = run(result, y.numpy().copy())
        assert out.shape == expected.shape
        assert np.abs(out - expected).max() <= 1e-4
