"""ctypes access to libbdinn_bdconv_cpu.so: the CUDA kernels' maths built for the CPU, in FP32."""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path

import numpy as np

from .build import build_libraries, default_build_dir
from .kernels import c_ints

_FLOAT_P = ctypes.POINTER(ctypes.c_float)


@cache
def load_cpu_library(path: Path | None = None) -> ctypes.CDLL:
    """The CPU library at path, or built (CPU only) into default_build_dir() when path is None."""
    if path is None:
        path = build_libraries(default_build_dir(), cuda=False)["cpu"]
    lib = ctypes.CDLL(str(path))
    lib.bdinn_banded_deform_conv_forward_cpu.restype = ctypes.c_int
    lib.bdinn_banded_deform_conv_forward_cpu.argtypes = [_FLOAT_P] * 5 + [ctypes.c_int] * 9
    lib.bdinn_cpu_error_string.restype = ctypes.c_char_p
    lib.bdinn_cpu_error_string.argtypes = [ctypes.c_int]
    return lib


def _as_float32(name: str, array, ndim: int) -> np.ndarray:
    a = np.ascontiguousarray(array, dtype=np.float32)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {list(a.shape)}")
    return a


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(_FLOAT_P)


def banded_deform_conv_cpu(
    x,
    geometry,
    weight,
    bias=None,
    dilation: tuple[int, int] = (1, 1),
    *,
    library: Path | None = None,
) -> np.ndarray:
    """BandedDeformConv2d forward: x [N,C,H,W], geometry [N,4,H,W], weight [O,C,kh,kw], bias [O].

    Inputs are converted to contiguous float32; returns float32 [N,O,H,W].
    """
    x = _as_float32("x", x, 4)
    geometry = _as_float32("geometry", geometry, 4)
    weight = _as_float32("weight", weight, 4)
    n, c, h, w = x.shape
    o, wc, kh, kw = weight.shape
    if geometry.shape != (n, 4, h, w):
        raise ValueError(f"geometry must be [{n},4,{h},{w}], got {list(geometry.shape)}")
    if wc != c:
        raise ValueError(f"weight has {wc} input channels, x has {c}")
    if bias is not None:
        bias = _as_float32("bias", bias, 1)
        if bias.shape != (o,):
            raise ValueError(f"bias must be [{o}], got {list(bias.shape)}")
    sizes = c_ints(
        "banded_deform_conv_cpu", n=n, c=c, h=h, w=w, o=o, kernel_h=kh, kernel_w=kw,
        dilation_h=int(dilation[0]), dilation_w=int(dilation[1]),
    )  # fmt: skip
    out = np.empty((n, o, h, w), dtype=np.float32)
    lib = load_cpu_library(None if library is None else Path(library))
    pointers = (_ptr(x), _ptr(geometry), _ptr(weight), _ptr(bias), _ptr(out))
    status = lib.bdinn_banded_deform_conv_forward_cpu(*pointers, *sizes)
    if status != 0:
        raise ValueError(f"banded_deform_conv_cpu: {lib.bdinn_cpu_error_string(status).decode()}")
    return out
