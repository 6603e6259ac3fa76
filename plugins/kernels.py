"""ctypes access to libbdinn_bdconv.so, the CUDA kernels' C ABI, for each Python consumer: the
TensorRT plugin's enqueue, the PyTorch CUDA op and the GPU tests and benchmarks."""

from __future__ import annotations

import ctypes
import os
from functools import cache
from pathlib import Path

FP32, FP16 = 0, 1  # the C ABI's dtype codes (bdinn_dtype in csrc/banded_deform_conv_api.h)


class KernelLibraryError(RuntimeError):
    """The CUDA kernel library cannot be found or loaded; the message says how to get it."""


def kernel_library_path() -> Path:
    """$BDINN_KERNEL_LIBRARY, else the library built by `bdinn.plugins.build` in the user cache."""
    if env := os.environ.get("BDINN_KERNEL_LIBRARY"):
        return Path(env)
    from .build import default_build_dir

    return default_build_dir() / "libbdinn_bdconv.so"


@cache
def load_kernels() -> ctypes.CDLL:
    path = kernel_library_path()
    if not path.is_file():
        raise KernelLibraryError(
            f"{path}: CUDA kernel library not built; run `python -m bdinn.plugins.build` on a machine "
            "with nvcc, or point BDINN_KERNEL_LIBRARY at libbdinn_bdconv.so"
        )
    if not os.environ.get("BDINN_KERNEL_LIBRARY"):  # one named by the user is theirs to keep current
        from .build import library_problem

        if problem := library_problem(path.parent, "cuda"):
            raise KernelLibraryError(f"{path}: {problem}; run `python -m bdinn.plugins.build` again")
    try:
        return declare_c_abi(ctypes.CDLL(str(path)))
    except OSError as exc:
        raise KernelLibraryError(f"{path}: cannot be loaded ({exc})") from None


def declare_c_abi(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Give the kernel library's C entry points their signatures (ctypes would guess int args)."""
    tensors_and_sizes = [ctypes.c_void_p] * 5 + [ctypes.c_int] * 9 + [ctypes.c_void_p]  # ..., stream
    lib.bdinn_banded_deform_conv_forward.restype = ctypes.c_int
    lib.bdinn_banded_deform_conv_forward.argtypes = [ctypes.c_int, *tensors_and_sizes]  # dtype
    algo = lib.bdinn_banded_deform_conv_forward_algo
    algo.restype = ctypes.c_int
    algo.argtypes = [ctypes.c_int, ctypes.c_int, *tensors_and_sizes]  # dtype, algorithm
    lib.bdinn_error_string.restype = ctypes.c_char_p
    lib.bdinn_error_string.argtypes = [ctypes.c_int]
    return lib


def c_ints(caller: str, **values: int) -> list[int]:
    """Values for the C ABI's int parameters, refused where they do not fit: ctypes keeps only the
    low 32 bits of a larger Python int, so a dilation of 2**32 + 1 ran as 1."""
    for name, value in values.items():
        if not -(2**31) <= value < 2**31:
            raise ValueError(f"{caller}: {name} {value} does not fit the kernels' 32-bit int")
    return list(values.values())


def forward(
    caller: str, dtype: int, x: int, geometry: int, weight: int, bias: int | None, out: int,
    n: int, c: int, h: int, w: int, o: int, kernel: tuple[int, int], dilation: tuple[int, int], stream: int,
) -> None:  # fmt: skip
    """Launch the forward kernel on `stream` (device pointers); RuntimeError naming the caller
    with the library's own words for a failed launch."""
    sizes = c_ints(
        caller, n=n, c=c, h=h, w=w, o=o, kernel_h=kernel[0], kernel_w=kernel[1],
        dilation_h=dilation[0], dilation_w=dilation[1],
    )  # fmt: skip
    lib = load_kernels()
    status = lib.bdinn_banded_deform_conv_forward(dtype, x, geometry, weight, bias, out, *sizes, stream)
    if status:
        raise RuntimeError(f"{caller}: {lib.bdinn_error_string(status).decode()}")
