"""BandedDeformConv2d as a Python TensorRT plugin (IPluginV3), same identity as the C++ plugin.

Name, version, namespace and serialised fields match plugins/tensorrt/, so a plan built with one
runs with the other. enqueue() launches the shared CUDA kernels through their C ABI (kernels.py).
TensorRT-RTX builds engines without calling it (on a machine without a GPU too), so the kernel
library is only looked for when its engine runs; data-centre TensorRT runs it while timing
tactics, so bdinn-export checks for the library before such a build.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import numpy as np

from .kernels import FP16, FP32, forward

PLUGIN_NAME = "BandedDeformConv2d"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "bdinn"
FIELDS = ("kernel_h", "kernel_w", "dilation_h", "dilation_w")
DEFAULT_FIELDS = {"kernel_h": 3, "kernel_w": 5, "dilation_h": 1, "dilation_w": 1}
INT32_MAX = 2**31 - 1
MAX_EXTENT = 1 << 24  # BDINN_MAX_EXTENT of csrc/banded_deform_conv_api.h: the kernel's reach stays below


class PluginFields:
    """The plugin's serialised form, four INT32 fields (`collection`), with the arrays it points
    into: TensorRT's PluginFieldCollection copies the fields but keeps no reference to their data,
    so arrays made for one call were freed, and their memory reused by any allocation (another
    thread's), before TensorRT read them: a plan could be built with another kernel or dilation."""

    def __init__(self, trt: Any, values: dict[str, int]) -> None:
        self.arrays = [np.array([values[name]], np.int32) for name in FIELDS]
        self.collection = trt.PluginFieldCollection(
            [
                trt.PluginField(name, array, trt.PluginFieldType.INT32)
                for name, array in zip(FIELDS, self.arrays, strict=True)
            ]
        )


@cache
def plugin_classes(trt: Any) -> tuple[type, type]:
    """(plugin, creator) classes for one TensorRT module (`tensorrt` or `tensorrt_rtx`)."""

    class BandedDeformConv2dPlugin(
        trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime
    ):
        def __init__(self, values: dict[str, int]) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            # TensorRT reads these attributes; a missing num_outputs or plugin_name crashes it.
            self.num_outputs = 1
            self.plugin_name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.values = dict(values)
            self.fields = PluginFields(trt, self.values)  # held for as long as TensorRT may read them

        def get_capability_interface(self, capability_type: Any) -> Any:
            return self

        def clone(self) -> BandedDeformConv2dPlugin:
            return BandedDeformConv2dPlugin(self.values)

        def get_fields_to_serialize(self) -> Any:
            return self.fields.collection

        def get_output_data_types(self, input_types: list[Any]) -> list[Any]:
            return [input_types[0]]

        def get_output_shapes(self, inputs: list[Any], shape_inputs: list[Any], builder: Any) -> list[Any]:
            """Checks the operands, as the C++ plugin's checkShapes does: the kernels would read past
            a geometry, weight or bias that does not fit x. An error here fails the parse cleanly."""
            shapes = [[d.get_constant_value() if d.is_constant() else None for d in t] for t in inputs]
            problem = shape_problem(shapes, (self.values["kernel_h"], self.values["kernel_w"]))
            if problem is not None:
                raise ValueError(f"{PLUGIN_NAME}: {problem}")
            x, weight = inputs[0], inputs[2]
            out = trt.DimsExprs(4)
            out[0], out[1], out[2], out[3] = x[0], weight[0], x[2], x[3]
            return [out]

        def supports_format_combination(self, pos: int, in_out: list[Any], num_inputs: int) -> bool:
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            if pos == 0:
                return desc.type in (trt.DataType.FLOAT, trt.DataType.HALF)
            return desc.type == in_out[0].desc.type  # one dtype for every input and the output

        def configure_plugin(self, inputs: list[Any], outputs: list[Any]) -> None:
            """Nothing to check here: TensorRT-RTX 1.7 corrupts its heap and aborts when this raises
            (get_output_shapes checks the weight; the exporter bounds the profile)."""

        def on_shape_change(self, inputs: list[Any], outputs: list[Any]) -> None:
            """Nothing to keep: enqueue reads shapes and dtype from its own descriptors."""

        def get_workspace_size(self, inputs: list[Any], outputs: list[Any]) -> int:
            return 0

        def attach_to_context(self, context: Any) -> BandedDeformConv2dPlugin:
            return self.clone()

        def enqueue(
            self, input_desc: Any, output_desc: Any, inputs: Any, outputs: Any, workspace: int, stream: int
        ) -> None:
            shapes = [list(desc.dims) for desc in input_desc]
            problem = shape_problem(shapes, (self.values["kernel_h"], self.values["kernel_w"]))
            if problem is not None:  # sizes the parse could not know (a foreign graph's dynamic ones)
                raise ValueError(f"{PLUGIN_NAME}: {problem}")
            n, c, h, w = input_desc[0].dims
            o = input_desc[2].dims[0]
            if n * h * w * o == 0:  # an empty output: nothing to write, and the kernels refuse it
                return
            dtype = FP16 if input_desc[0].type == trt.DataType.HALF else FP32
            bias = inputs[3] if len(inputs) > 3 else None
            v = self.values
            forward(
                f"{PLUGIN_NAME} kernel failed", dtype, inputs[0], inputs[1], inputs[2], bias, outputs[0],
                n, c, h, w, o, (v["kernel_h"], v["kernel_w"]), (v["dilation_h"], v["dilation_w"]), stream,
            )  # fmt: skip

    class BandedDeformConv2dCreator(trt.IPluginCreatorV3One):
        def __init__(self) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_version = PLUGIN_VERSION
            # The ONNX parser passes a node attribute on only if it is declared here.
            self.fields = PluginFields(trt, DEFAULT_FIELDS)
            self.field_names = self.fields.collection

        def create_plugin(self, name: str, fields: Any, phase: Any) -> BandedDeformConv2dPlugin:
            values = dict(DEFAULT_FIELDS)
            integers = {trt.PluginFieldType.INT8, trt.PluginFieldType.INT16, trt.PluginFieldType.INT32,
                        trt.PluginFieldType.INT64}  # fmt: skip
            for field in fields:
                if field.name in values:
                    data = np.asarray(field.data).reshape(-1)
                    if field.type not in integers or data.size < 1:  # as the C++ creator: "2" read 50
                        raise ValueError(f"{PLUGIN_NAME}: field '{field.name}' must be one integer")
                    values[field.name] = int(data[0])
            check_fields(values)
            return BandedDeformConv2dPlugin(values)

    return BandedDeformConv2dPlugin, BandedDeformConv2dCreator


def shape_problem(shapes: list[list[int | None]], kernel: tuple[int, int]) -> str | None:
    """What is wrong with the operands' shapes (None for a size not known until run time), or None."""
    problem = _first_problem(shapes, kernel)  # checked for every frame: the message only when needed
    if problem is None:
        return None
    return f"{problem}; got " + ", ".join(
        f"{name} [{','.join('?' if d is None else str(d) for d in shape)}]"
        for name, shape in zip(("x", "geometry", "weight", "bias"), shapes, strict=False)
    )


def _first_problem(shapes: list[list[int | None]], kernel: tuple[int, int]) -> str | None:
    def conflict(a: int | None, b: int | None) -> bool:
        return a is not None and b is not None and a != b

    if (
        len(shapes) not in (3, 4)
        or [len(s) for s in shapes[:3]] != [4, 4, 4]
        or (len(shapes) == 4 and len(shapes[3]) != 1)
    ):
        return "expects x [N,C,H,W], geometry [N,4,H,W], weight [O,C,kh,kw] and an optional bias [O]"
    x, geometry, weight = shapes[:3]
    if conflict(geometry[1], 4):
        return "geometry must have 4 channels (cos, sin, sx, sy)"
    if any(conflict(geometry[i], x[i]) for i in (0, 2, 3)):
        return "geometry must match x in N, H and W"
    if conflict(weight[1], x[1]):
        return "weight must have as many input channels as x"
    if conflict(weight[2], kernel[0]) or conflict(weight[3], kernel[1]):
        return f"weight kernel does not match the attributes kernel_h={kernel[0]}, kernel_w={kernel[1]}"
    if len(shapes) == 4 and conflict(shapes[3][0], weight[0]):
        return "bias must have one value per output channel"
    return None


def check_fields(values: dict[str, int]) -> None:
    """The C++ creator's checks, at build time: else a bad dilation surfaced only in the kernel,
    when an engine first ran on a GPU."""
    for name in FIELDS:
        if not 1 <= values[name] <= INT32_MAX:  # serialised as INT32, as the C++ creator reads them
            raise ValueError(f"{PLUGIN_NAME}: {name} must be from 1 to 2^31-1, got {values[name]}")
    kernel = values["kernel_h"], values["kernel_w"]
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ValueError(f"{PLUGIN_NAME}: kernel_h and kernel_w must be odd, got {kernel[0]} and {kernel[1]}")
    reach = values["kernel_h"] // 2 * values["dilation_h"] + values["kernel_w"] // 2 * values["dilation_w"]
    if reach >= MAX_EXTENT or max(kernel) >= MAX_EXTENT:
        raise ValueError(
            f"{PLUGIN_NAME}: the kernel reaches beyond 2^24 pixels (kernel_h/2 * dilation_h + kernel_w/2 * "
            "dilation_w), more than the kernels address"
        )


_registered: dict[int, Any] = {}
_registering = threading.Lock()  # two models opened at once on two threads register it once


def register_python_plugin(trt: Any) -> Any:
    """Register the creator with `trt`'s plugin registry once per process; returns it."""
    with _registering:
        if id(trt) not in _registered:
            _registered[id(trt)] = _register(trt)
        return _registered[id(trt)]


def _register(trt: Any) -> Any:
    """One registration of the creator; the registry holds a borrowed reference: keep it alive."""
    from ..runtime.tensorrt import is_rtx_module, link_unversioned_rtx_core

    if is_rtx_module(trt):  # its parser aborts the process on our node without it
        link_unversioned_rtx_core()
    _, creator_class = plugin_classes(trt)
    creator = creator_class()
    if not trt.get_plugin_registry().register_creator(creator, PLUGIN_NAMESPACE):
        raise RuntimeError(
            f"could not register the Python {PLUGIN_NAMESPACE}::{PLUGIN_NAME} plugin: one is registered "
            "in this process already (a C++ plugin library loaded before?): use one plugin per process"
        )
    return creator
