"""`Debander`: the one entry point that serves any bdinn model file to numpy frames or GPU tensors.

    deband = Debander.open("model.plan")        # or .onnx, .safetensors, or None: the bundled model
    clean = deband(frame)                        # H x W x 3 uint8/uint16 -> same layout
    clean16 = deband(frame, bit_depth=16)        # keep the debanded gradients' extra precision
    frames = deband([f1, f2, f3])                # a batch

The backend follows the file's suffix; everything around it (channels, alpha, padding, tiling,
the change limit, output depth, dithering) happens here, identically for every backend, so
results agree across backends within the precision of the model file (except that the CPU runs
frames over 2048 x 1152 pixels in tiles, which moves a few samples in 1000 by one 8-bit level
against a GPU's whole frame: 1 in 1000 on a gradient, 5 in 1000 on a detailed photograph). An instance may be
shared by a decode and an encode thread: how it serves frames does not change after `open`
(only `close` and a one-time warning touch its state), and every backend is thread-safe.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from importlib.util import find_spec
from numbers import Integral, Real
from pathlib import Path
from typing import Any, overload

import numpy as np

from .backends import BACKENDS, Backend, BackendError, open_backend
from .files import BUNDLED_MODELS
from .processing import (
    MIN_SIDE,
    OFF_LATTICE,
    Frame,
    Progress,
    by_rows,
    even_tile,
    join_frame,
    on_a_lattice,
    pad_to,
    posterised,
    run_tiled,
    sampled_rows,
    split_frame,
)

DEFAULT_OVERLAP = 64  # pixels shared by neighbouring tiles; see tests/test_runtime.py
# On the CPU, frames of more pixels than this (2K: 2048 x 1152) run in even tiles of at most as
# many. ONNX Runtime's memory grows with the frame, 1.7 GB for 1080p, 7 GB for 4K UHD and about
# 24 GB for 8K; in tiles only the frame's own buffers grow (4K 2.1 GB, 8K 3.3 GB), and 4K runs a
# little faster (16.2 s a frame against 18.0 whole on 2 cores). 1080p stays whole.
HOST_TILE_PIXELS = 2048 * 1152
# The most the model may move any value, in 8-bit levels. A band step in 8-bit video is one or
# two levels; the bundled model also smooths thin lines and grain by far more, which no
# debander should. 2 maximised the mean PSNR over the five bdinn-eval degradations on training
# pictures (against 1, 3, 4, 6 and no limit); README, Evaluation has what it costs (4-bit input).
DEFAULT_MAX_CHANGE = 2.0


def limit_change_tensor(batch: Any, out: Any, max_change: float | None) -> Any:
    """`out` kept within max_change 8-bit levels of `batch` ([N, 3, H, W] tensors in [0, 1]) and
    equal to it where `batch` is 0 or 1 in a frame that is not `posterised`, NaN replaced by the
    input.

    Not in place: the torch backend returns inference-mode tensors, which refuse in-place updates.
    Shared by `Debander.tensor` and training validation, which scores what users are served."""
    import torch

    out = torch.where(torch.isnan(out), batch, out)  # clamp keeps NaN; the input's value stands there
    if max_change is None:
        return out
    limit = max_change / 255
    out = torch.clamp(out, batch - limit, batch + limit)
    used = torch.zeros(len(batch), 256, device=batch.device)  # `posterised` on the device: a mask, not a wait
    for rows in sampled_rows(batch.shape[-2]):
        used.scatter_(1, torch.round(batch[:, :, rows].float() * 255).clamp(0, 255).long().flatten(1), 1.0)
    drawn = ~on_a_lattice(used > 0, _off_lattice_on(batch.device)).view(-1, 1, 1, 1)
    return torch.where(((batch == 0) | (batch == 1)) & drawn, batch, out)


@functools.cache
def _off_lattice_on(device: Any) -> Any:
    """OFF_LATTICE as a tensor on `device`, made once: a copy from the host each frame waited for
    the GPU to finish the network."""
    import torch

    return torch.from_numpy(OFF_LATTICE).to(device)


def _split(image: np.ndarray, index: int | None) -> Frame:
    """split_frame, its error naming the frame of a list that caused it."""
    try:
        return split_frame(image)
    except (TypeError, ValueError) as exc:
        if index is None:
            raise
        raise type(exc)(f"frame {index} of the list: {exc}") from None


def _check_progress(progress: object) -> None:
    """Now, not when a frame first runs in tiles: progress=5 failed only on large pictures."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(done, total) or None, got {progress!r}")


def default_model_path(backend: str | None = None, device: str | None = None) -> Path:
    """The bundled model file for `backend`, or for the best backend installed here for `device`.

    ONNX Runtime serves the portable graph on any machine; PyTorch serves the checkpoint and is
    preferred when it sees a CUDA GPU (FP16 with our kernels), unless the device asked for is
    the CPU. TensorRT needs an engine built for the GPU at hand, which no package can ship:
    build one with bdinn-export.
    """
    _check_backend(backend)
    if backend is None:
        backend = _best_default_backend(device)
    if backend == "tensorrt":
        raise BackendError(
            "no TensorRT engine is bundled (engines are GPU-specific): build one with "
            "`bdinn-export --fp16 -o model.plan` and pass its path"
        )
    name = "default.onnx" if backend == "onnxruntime" else "default.safetensors"
    path = BUNDLED_MODELS / name
    if not path.is_file():
        raise BackendError(f"{path}: the bundled default model is missing (reinstall bdinn)")
    return path


def _check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")


def _best_default_backend(device: str | None = None) -> str:
    has_ort, has_torch = find_spec("onnxruntime") is not None, find_spec("torch") is not None
    if has_torch and device != "cpu" and _may_have_cuda():  # on the CPU, ONNX Runtime is 2x PyTorch
        import torch

        if torch.cuda.is_available():
            return "torch"
    if has_ort:
        return "onnxruntime"
    if has_torch:
        return "torch"
    raise BackendError(
        "no inference backend is installed: pip install '.[onnx]' (ONNX Runtime) or '.[train]' (PyTorch) in "
        "bdinn's folder"
    )


class Debander:
    """A loaded model plus the frame handling every backend shares."""

    def __init__(
        self,
        backend: Backend,
        tile: int | None = None,
        overlap: int | None = None,
        max_change: float | None = DEFAULT_MAX_CHANGE,
    ) -> None:
        self.backend = backend
        self._tile, self._overlap, self._max_change = _checked_options(tile, overlap, max_change)
        if overlap is None and backend.max_size is not None:  # the default fits an engine's small profile
            self._overlap = min(self._overlap, min(side // 8 * 8 for side in backend.max_size) // 2)
        self.closed = False
        self._said_8_bit = False  # warned that a uint8 model rounds 16-bit or float work

    # Read-only: checked once, and shared by every thread using this Debander (an assigned NaN
    # limit made every output black). Open another with the options wanted.
    @property
    def tile(self) -> int | None:
        return self._tile

    @property
    def overlap(self) -> int:
        return self._overlap

    @property
    def max_change(self) -> float | None:
        return self._max_change

    def __reduce__(self) -> Any:
        """Refused for copy, deepcopy and pickle alike: a shallow copy shared the model, which
        either one's close() took from the other, and the others failed deep in the backend."""
        raise TypeError(
            "a Debander holds an open model and cannot be copied or pickled: share this one (it is "
            "thread-safe), or open one per process with Debander.open(path)"
        )

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        backend: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        plugin_library: str | Path | None = None,
        allow_embedded_plugin: bool = False,
        max_change: float | None = DEFAULT_MAX_CHANGE,
    ) -> Debander:
        """Open a .plan/.engine (TensorRT), .onnx (ONNX Runtime) or .safetensors (PyTorch) file.

        Without `path`, the bundled default model on the best backend installed here. The output
        stays within `max_change` 8-bit levels of the input and keeps its black and white (unless
        it is `posterised`; None: the model's output as it is).
        A plan's plugin runs as the Python plugin unless `plugin_library` names the C++ one; a
        plan that carries its plugin library (bdinn-export --serialize-plugin: native code) opens
        only with `allow_embedded_plugin=True`.
        """
        _check_backend(backend)
        _checked_options(tile, overlap, max_change)  # before a model takes seconds to load
        model = Path(path) if path is not None else default_model_path(backend, device)
        # the bundled model: FP16 in PyTorch on CUDA; its ONNX graph (any machine without) is FP32
        if path is None and precision == "fp16" and (device == "cpu" or model.suffix == ".onnx"):
            raise BackendError(
                "the bundled model runs fp16 in PyTorch on a CUDA GPU only; use fp32 here (or export an fp16 "
                "graph: bdinn-export --fp16)"
            )
        if precision is None and path is None and model.suffix == ".safetensors" and device != "cpu":
            precision = _default_torch_precision(device)
        opened = open_backend(
            model, backend=backend, device=device, precision=precision,
            plugin_library=Path(plugin_library) if plugin_library else None,
            allow_embedded_plugin=allow_embedded_plugin,
        )  # fmt: skip
        return cls(opened, tile=tile, overlap=overlap, max_change=max_change)

    # numpy frames ---------------------------------------------------------------------------

    @overload
    def __call__(
        self, image: np.ndarray, *, bit_depth: int | None = ..., dither: bool = ..., seed: int | None = ...,
        progress: Progress | None = ...,
    ) -> np.ndarray: ...  # fmt: skip
    @overload
    def __call__(
        self, image: Sequence[np.ndarray], *, bit_depth: int | None = ..., dither: bool = ...,
        seed: int | None = ..., progress: Progress | None = ...,
    ) -> list[np.ndarray]: ...  # fmt: skip

    def __call__(
        self,
        image: np.ndarray | Sequence[np.ndarray],
        *,
        bit_depth: int | None = None,
        dither: bool = False,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Deband one frame or a list of frames.

        Frames are H x W or H x W x 1 (gray), H x W x 2 (gray + alpha), H x W x 3 (RGB) or
        H x W x 4 (RGBA), uint8 or uint16, at least 16x16; alpha passes through. uint16 samples
        are on the full 0..65535 scale (as PyAV's rgb48 and 16-bit PNGs hold them): shift 10- or
        12-bit values held in uint16 up first (`frame << 6` for 10 bits). The output keeps the
        layout, C-contiguous; its depth is the input's unless `bit_depth` (8 or 16) says
        otherwise, and `dither` adds TPDF dither before rounding so an 8-bit result does not band
        again; `seed` makes the noise repeatable (None: fresh each call). One generator serves a
        list in order, so a frame's noise depends on its place in the list: seed each call of one
        frame (bdinn-run seeds frame N with N) to make a frame's output depend on itself alone.
        `progress(done, total)` is called after each tile of a frame that runs in tiles
        (`tile_for`; a list counts again for each frame size): a large picture on the CPU takes a
        minute.
        """
        if bit_depth is not None and bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16 (None: the input's), got {bit_depth!r}")
        if not isinstance(dither, bool | np.bool_):  # numpy's too, as its integers are for seed
            raise TypeError(f"dither must be True or False, got {dither!r}")
        dither = bool(dither)
        if seed is not None and not _is_int(seed):
            raise TypeError(f"seed must be a whole number >= 0 or None, got {seed!r}")
        if seed is not None and seed < 0:  # the right kind, a wrong value
            raise ValueError(f"seed must be a whole number >= 0 or None, got {seed!r}")
        _check_progress(progress)
        if isinstance(image, np.ndarray):
            return self._frames([image], bit_depth, dither, seed, progress)[0]
        if hasattr(image, "__array__") or isinstance(image, memoryview):  # iterating would cut it in rows
            hint = (
                " (or Debander.tensor for [N, 3, H, W] tensors)" if type(image).__module__ == "torch" else ""
            )
            raise TypeError(f"expected a numpy frame, got {type(image).__name__}: pass np.asarray(it){hint}")
        if not isinstance(image, Iterable) or isinstance(image, (str, bytes)):
            raise TypeError(f"expected a numpy frame or a list of them, got {type(image).__name__}")
        return self._frames(list(image), bit_depth, dither, seed, progress)

    def _frames(
        self, images: list[np.ndarray], bit_depth: int | None, dither: bool, seed: int | None,
        progress: Progress | None,
    ) -> list[np.ndarray]:  # fmt: skip
        self._check_open()
        frames = [_split(image, index if len(images) > 1 else None) for index, image in enumerate(images)]
        if bit_depth == 16 or any(image.dtype.itemsize == 2 for image in images):  # >u2 too
            self._say_8_bit("16-bit pictures and output (a video's 10-bit output too) are", stacklevel=4)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(frames):
            by_size.setdefault(frame.chw.shape[1:], []).append(index)
        outputs: list[np.ndarray | None] = [None] * len(frames)
        for indices in by_size.values():  # one backend call per frame size
            batch = (
                frames[indices[0]].chw[None]
                if len(indices) == 1
                else np.stack([frames[i].chw for i in indices])
            )
            for i, chw in zip(indices, self._infer(batch, progress, stacklevel=4), strict=True):
                outputs[i] = chw
        rng = np.random.default_rng(seed)  # drawn in list order: a frame's noise depends on those before it
        return [
            join_frame(frame, chw, bit_depth or (8 if image.dtype == np.uint8 else 16), dither, rng)
            for frame, chw, image in zip(frames, outputs, images, strict=True)
        ]

    def infer(self, batch: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """float32 [N, 3, H, W] in [0, 1] -> debanded, same shape, in [0, 1]; tiles and pads as the
        backend needs, calling progress(done, total) after each tile. Values must be finite: the
        network spreads one NaN or inf over the whole frame (not checked: it would cost a pass)."""
        out = self._infer(batch, progress, stacklevel=3)
        self._say_8_bit("float frames and output are", stacklevel=3)
        return out

    def _say_8_bit(self, what: str, stacklevel: int) -> None:
        """Once per Debander: a uint8-I/O model rounds what it is given, and what it gives, to 8 bits."""
        if getattr(self.backend, "uint8_io", False) and not self._said_8_bit:
            self._said_8_bit = True
            warnings.warn(
                f"this model takes and returns 8-bit pictures (exported with --io uint8), so {what} "
                "rounded to 8-bit levels; export it with --io float to keep them",
                stacklevel=stacklevel,
            )

    def _infer(self, batch: np.ndarray, progress: Progress | None, stacklevel: int) -> np.ndarray:
        """`infer` for every entry point; `stacklevel` puts a warning from here on the caller's line."""
        self._check_open()
        if not isinstance(batch, np.ndarray) or batch.dtype.kind != "f":
            got = batch.dtype if isinstance(batch, np.ndarray) else type(batch).__name__
            raise TypeError(f"expected a float [N, 3, H, W] numpy batch in [0, 1], got {got}")
        if batch.ndim != 4 or batch.shape[1] != 3 or not batch.size:
            raise ValueError(
                f"expected a float [N, 3, H, W] batch with N, H and W at least 1, got shape {batch.shape}"
            )
        _check_progress(progress)
        tile = self.tile_for(batch.shape[-2:])
        if tile is None:
            out = self._infer_padded(batch)
        else:
            out = run_tiled(self._infer_padded, batch, tile, self.overlap, progress, self.backend.tile_grid)
        return self._limited(batch, out, stacklevel + 1)

    def _limited(self, batch: np.ndarray, out: np.ndarray, stacklevel: int) -> np.ndarray:
        """Every value within max_change 8-bit levels of the input, then within [0, 1] (a network
        and the limit can reach past them; a caller's 8-bit cast of 1.008 wraps to black), and the
        input's where it is 0 or 1 in a frame that is not `posterised`: about 10 ms for a 1080p
        frame on one core, 19 with black bars (np.clip with array bounds took 15 for the clamp
        alone). The first step writes a new float32 array, so the backend's own buffer (ONNX
        Runtime's arena, which never shrinks) is not what a caller keeps."""
        result = np.empty(out.shape, np.float32)
        limit = None if self.max_change is None else np.float32(min(self.max_change, 255) / 255)
        ends = limit is not None and (batch.min() == 0 or batch.max() == 1)  # else nothing to keep
        drawn = ~posterised(batch)[:, None, None, None] if ends else None  # frames whose ends are kept
        broken: list[int] = []

        def clamp(rows: slice) -> None:
            part, done = out[..., rows, :], result[..., rows, :]
            if np.isnan(part.min()):  # np.clip keeps NaN: black in a caller's 8-bit cast, whatever the limit
                lost = np.isnan(part)
                part = np.where(lost, batch[..., rows, :], part)
                broken.append(int(lost.sum()))
            if limit is not None:
                np.subtract(part, batch[..., rows, :], out=done)
                np.clip(done, -limit, limit, out=done)
                done += batch[..., rows, :]
                np.clip(done, 0, 1, out=done)
                if drawn is not None and drawn.any():
                    given = batch[..., rows, :]
                    np.copyto(done, given, where=((given == 0) | (given == 1)) & drawn)
            else:
                np.clip(part, 0, 1, out=done)

        by_rows(clamp, out.shape[-2])
        if broken:
            warnings.warn(
                f"the model gave {sum(broken)} NaN values; the input's stand there (a model with broken "
                "weights, or one overflowing in FP16)",
                stacklevel=stacklevel,
            )
        return result

    def tile_for(self, size: tuple[int, ...]) -> tuple[int, int] | None:
        """The (height, width) tiles a frame of this size (height, width; or the frame's own
        shape) runs in, cut evenly: of at most the user's tile x tile, else within the backend's
        profile for a frame beyond it, else of at most HOST_TILE_PIXELS for a large frame on the
        CPU; None: the frame runs whole. Memory and time follow the tile, not the frame."""
        self._check_open()
        if not (len(size) == 2 or (len(size) == 3 and size[2] in (1, 2, 3, 4))):  # [N, 3, H, W]: H, W?
            raise ValueError(
                f"tile_for takes (height, width) or a frame's H x W x C shape, got {tuple(size)}; for a "
                "batch, batch.shape[-2:]"
            )
        size = (int(size[0]), int(size[1]))  # a frame's shape was "too many values to unpack"
        limit, least = self.backend.max_size, 2 * self.overlap  # room for both fades of a tile
        grid = self.backend.tile_grid
        bound = limit  # the largest frame that runs whole: the profile's, and the user's tile
        if self.tile is not None:
            bound = (
                (self.tile, self.tile)
                if limit is None
                else (min(self.tile, limit[0]), min(self.tile, limit[1]))
            )
        if bound is not None and (size[0] > bound[0] or size[1] > bound[1]):
            top = (bound[0] // 8 * 8, bound[1] // 8 * 8)
            smallest = self.backend.min_size if limit is not None else (0, 0)
            low = [min(max(least, m), t) for m, t in zip(smallest, top, strict=True)]
            return even_tile(size, self.overlap, max_shape=top, min_shape=(low[0], low[1]), grid=grid)
        if self.tile is not None:
            return None
        if self.backend.device == "cpu" and size[0] * size[1] > HOST_TILE_PIXELS:
            least = min(least, 1024)  # an --overlap given for engine tiles must not refuse CPU frames
            return even_tile(
                size, least // 2, max_pixels=HOST_TILE_PIXELS, min_shape=(least, least), grid=grid
            )
        return None

    def _infer_padded(self, batch: np.ndarray) -> np.ndarray:
        """Mirror-pad frames smaller than the backend's minimum (an engine profile) and crop back."""
        h, w = batch.shape[-2:]
        if not self._below_minimum(h, w):
            return self.backend.infer(np.ascontiguousarray(batch, np.float32))
        low_h, low_w = self.backend.min_size
        out = self.backend.infer(pad_to(batch, max(h, low_h), max(w, low_w)))
        return out[:, :, :h, :w]

    def _below_minimum(self, height: int, width: int) -> bool:
        """Whether a frame is smaller than the backend takes on a side (an engine profile's min)."""
        low_h, low_w = self.backend.min_size
        return height < low_h or width < low_w

    # GPU tensors ----------------------------------------------------------------------------

    def tensor(self, batch: Any) -> Any:
        """A torch tensor [N, 3, H, W] (or [3, H, W]) in [0, 1] -> debanded, in [0, 1], same device
        and dtype.

        On the PyTorch and TensorRT backends a CUDA tensor stays on the GPU (work is queued on
        the current torch stream); other combinations go through the host. Values must be finite,
        as for `infer` (checking would wait for the GPU).
        """
        import torch

        self._check_open()
        if not isinstance(batch, torch.Tensor):
            raise TypeError(
                f"expected a torch tensor (numpy frames: call the Debander), got {type(batch).__name__}"
            )
        if (
            not batch.is_floating_point()
            or batch.dim() not in (3, 4)
            or batch.shape[-3] != 3
            or not batch.numel()
        ):
            shape = f"{batch.dtype} {list(batch.shape)}"
            raise ValueError(f"expected a float [N, 3, H, W] or [3, H, W] tensor in [0, 1], got {shape}")
        batch = batch.detach()  # inference only: no graph to keep
        single = batch.dim() == 3
        if single:
            batch = batch[None]
        serve = getattr(self.backend, "infer_tensor", None)
        h, w = batch.shape[-2:]
        if serve is not None and not self._below_minimum(h, w) and self.tile_for((h, w)) is None:
            out = limit_change_tensor(batch, serve(batch), self.max_change)
        else:  # infer tiles, pads a frame below an engine's profile, and applies the limit
            host = self._infer(batch.float().cpu().numpy(), None, stacklevel=3)
            out = torch.from_numpy(host).to(batch.device, batch.dtype)
        self._say_8_bit("float tensors and output are", stacklevel=3)
        out = out.clamp(0, 1)  # the limit can reach past 0 and 1, as a network can; an 8-bit cast wraps
        return out[0] if single else out

    # life cycle -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Backend, device, precision and versions, for logs and benchmarks."""
        self._check_open()
        return {**self.backend.describe(), "tile": self.tile, "max_change": self.max_change}

    def close(self) -> None:
        """Free the backend's memory (GPU buffers, threads); later calls raise BackendError."""
        if not self.closed:
            self.closed = True
            self.backend.close()

    def _check_open(self) -> None:
        if self.closed:
            raise BackendError("this Debander is closed; open the model again")

    def __enter__(self) -> Debander:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checked_options(
    tile: int | None, overlap: int | None, max_change: float | None
) -> tuple[int | None, int, float | None]:
    """(tile, overlap, max_change) as Debander keeps them; ValueError naming a bad one."""
    if tile is not None and (not _is_int(tile) or tile < 2 * MIN_SIDE or tile % 8):
        raise ValueError(f"tile must be a multiple of 8 and at least {2 * MIN_SIDE}, got {tile!r}")
    if overlap is None:  # DEFAULT_OVERLAP, or half of a smaller tile
        overlap = DEFAULT_OVERLAP if tile is None else min(DEFAULT_OVERLAP, tile // 2)
    if not _is_int(overlap) or overlap < 0 or (tile is not None and overlap * 2 > tile):
        raise ValueError(f"overlap must be a whole number between 0 and half the tile, got {overlap!r}")
    if max_change is not None and (
        isinstance(max_change, bool) or not isinstance(max_change, Real) or not 0 < max_change < math.inf
    ):
        raise ValueError(
            f"max_change must be a positive number of 8-bit levels, or None for no limit; got {max_change!r}"
        )
    return (
        None if tile is None else int(tile),
        int(overlap),
        None if max_change is None else float(max_change),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _may_have_cuda() -> bool:
    """False where no NVIDIA driver is loaded (Linux without its device files): importing torch
    only to ask would add 1.4 s to every bdinn-run of the bundled model on a CPU machine."""
    if not sys.platform.startswith("linux"):
        return True
    return any(Path(device).exists() for device in ("/dev/nvidiactl", "/dev/dxg"))  # dxg: WSL


def _default_torch_precision(device: str | None) -> str:
    """The bundled weights are FP16: serve them in FP16 on a GPU, FP32 on the CPU."""
    import torch

    on_gpu = device.startswith("cuda") if device else torch.cuda.is_available()
    return "fp16" if on_gpu else "fp32"
