"""`Debander` on real backends: PyTorch and ONNX Runtime agree, and frame handling is exact."""

import itertools
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from common import Unallocatable, perturbed_tiny

from bdinn.runtime import BackendError, Debander, processing
from bdinn.runtime.debander import DEFAULT_MAX_CHANGE, default_model_path, limit_change_tensor
from bdinn.runtime.imageio import from_float, read_image, write_image
from bdinn.train.checkpoint import save_checkpoint

DATA = Path(__file__).parent / "data"


class TinyModels:
    """The same perturbed tiny network as a checkpoint and as portable ONNX graphs, each made when
    a test first asks for it, once per run for every worker."""

    def __init__(self, made_once) -> None:
        self.made_once = made_once

    def __getitem__(self, key: str) -> Path:
        if key == "torch":
            return self.made_once("tiny-checkpoint", self._save) / "tiny.safetensors"
        if not (_has("onnx") and _has("onnxruntime")):
            pytest.skip(f"{key} model needs the onnx extra")
        io = {"onnx": "float", "onnx-uint8": "uint8"}[key]
        return self.made_once(f"tiny-{key}", lambda folder: self._export(folder, io)) / "tiny.onnx"

    @staticmethod
    def _save(folder: Path) -> None:
        save_checkpoint(folder / "tiny.safetensors", perturbed_tiny(), config_name=None, step=1)

    @staticmethod
    def _export(folder: Path, io: str) -> None:
        from bdinn.export.onnx_export import export_onnx

        export_onnx(perturbed_tiny(), folder / "tiny.onnx", "gridsample", io=io)


@pytest.fixture(scope="module")
def models(made_once) -> TinyModels:
    return TinyModels(made_once)


def _has(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


@pytest.fixture(scope="module")
def sky() -> np.ndarray:
    return read_image(DATA / "sky-gradient.png")[:96, :128]


def test_torch_and_onnxruntime_agree(models, sky):
    # max_change=None: the backends' raw outputs, which the change limit would partly hide.
    reference = Debander.open(models["torch"], tile=None, max_change=None)
    onnx = Debander.open(models["onnx"], max_change=None)
    batch = sky.astype(np.float32).transpose(2, 0, 1)[None] / 255
    a, b = reference.infer(batch), onnx.infer(batch)
    assert a.shape == b.shape == batch.shape
    assert np.abs(a - b).max() <= 1e-4
    assert np.abs(a - batch).max() > 1e-3  # the perturbed network really changes the picture
    assert reference.describe()["backend"] == "torch" and onnx.describe()["backend"] == "onnxruntime"


def test_uint8_io_graph_matches_float_graph_to_one_level(models, sky):
    float_graph = Debander.open(models["onnx"], max_change=None)(sky)
    uint8_graph = Debander.open(models["onnx-uint8"], max_change=None)(sky)
    assert uint8_graph.dtype == np.uint8 and uint8_graph.shape == sky.shape
    assert np.abs(float_graph.astype(int) - uint8_graph.astype(int)).max() <= 1


def test_a_uint8_io_graph_says_it_rounds_16_bit_work_once(models, sky):
    """Its 16-bit output came back in multiples of 257, without a word."""
    deband = Debander.open(models["onnx-uint8"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband(sky)  # 8 bits in and out: nothing to say
    with pytest.warns(
        UserWarning, match=r"8-bit pictures \(exported with --io uint8\), so 16-bit .* --io float"
    ):
        out = deband(sky, bit_depth=16)
    assert np.all(out % 257 == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband(sky.astype(np.uint16) * 257)  # said once per Debander


def test_a_uint8_io_graph_says_it_rounds_float_work_once(models, sky):
    """Debander.infer and .tensor on such a model rounded float frames to 8-bit levels silently."""
    batch = sky.astype(np.float32).transpose(2, 0, 1)[None] / 255 + 0.3 / 255  # between 8-bit levels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Debander.open(models["onnx"]).infer(batch)  # a float graph keeps them: nothing to say
    deband = Debander.open(models["onnx-uint8"], max_change=None)
    said_float = r"8-bit pictures \(exported with --io uint8\), so float frames and output are rounded"
    with pytest.warns(UserWarning, match=said_float) as said:
        out = deband.infer(batch)
    assert len(said) == 1 and said[0].filename == __file__
    assert np.array_equal(out, np.round(out * 255) / 255)  # on 8-bit levels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband.tensor(torch.from_numpy(batch))  # said once per Debander
    with pytest.warns(UserWarning, match=r"so float tensors and output are rounded to 8-bit levels"):
        Debander.open(models["onnx-uint8"]).tensor(torch.from_numpy(batch))


def test_matches_the_network_directly(models, sky):
    model = perturbed_tiny()
    with torch.no_grad():
        expected = model(torch.from_numpy(sky.astype(np.float32).transpose(2, 0, 1)[None] / 255))[0]
    expected = from_float(expected.numpy().transpose(1, 2, 0), 16)
    out = Debander.open(models["torch"], max_change=None)(sky, bit_depth=16)
    assert out.dtype == np.uint16
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 8  # 8/65535: float rounding only


def test_tiled_agrees_with_untiled_away_from_the_border(models):
    image = read_image(DATA / "soft-shapes.png")[:200, :232]
    batch = image.astype(np.float32).transpose(2, 0, 1)[None] / 255
    whole = Debander.open(models["torch"], max_change=None).infer(batch)
    tiled = Debander.open(models["torch"], tile=128, overlap=64, max_change=None)
    parts = tiled.infer(batch)
    # Tiles see less context than the whole frame; the cross-fade keeps the difference below
    # 1.5/255 (a random-weight network: a trained, near-identity one differs far less).
    inner = np.abs(whole - parts)[:, :, 16:-16, 16:-16]
    assert inner.max() <= 6e-3
    assert inner.mean() <= 5e-4
    assert np.abs(whole - parts).max() > 0  # the frame really was tiled


@pytest.mark.parametrize("key", ["torch", "onnx"])
def test_large_frames_on_the_cpu_run_in_even_tiles(models, monkeypatch, key):
    """A frame of more than HOST_TILE_PIXELS runs in even tiles on the CPU (an 8K frame whole
    needs about 24 GB); one of at most that runs whole. The limit is lowered to keep frames small."""
    from bdinn.runtime import debander
    from bdinn.runtime.processing import run_tiled

    image = read_image(DATA / "soft-shapes.png")[:200, :232]
    assert image.shape == (192, 232, 3)
    batch = image.astype(np.float32).transpose(2, 0, 1)[None] / 255
    whole = Debander.open(models[key], max_change=None)
    expected = whole.infer(batch)
    monkeypatch.setattr(debander, "HOST_TILE_PIXELS", 192 * 232)
    np.testing.assert_array_equal(Debander.open(models[key], max_change=None).infer(batch), expected)
    monkeypatch.setattr(debander, "HOST_TILE_PIXELS", 128 * 128)
    auto = Debander.open(models[key], max_change=None)
    assert auto.tile_for((192, 232)) == (128, 128)  # 2 x 3 tiles: none narrower than its two fades
    assert auto.tile_for(image.shape) == (128, 128)  # a frame's own shape: 'too many values to unpack'
    with pytest.raises(ValueError, match=r"for a batch, batch.shape\[-2:\]"):  # taken as 1 x 3: 'whole'
        auto.tile_for(batch.shape)
    tiled = run_tiled(whole.backend.infer, batch, (128, 128), 64)
    clipped = np.clip(tiled, 0, 1)  # infer keeps values in [0, 1], as the network may not
    np.testing.assert_allclose(auto.infer(batch), clipped, atol=1e-5)  # float noise of two model loads
    assert np.abs(tiled - expected).max() > 1e-3
    if key == "torch":  # torch tensors on the CPU as well: they used to skip the tiling
        served = auto.tensor(torch.from_numpy(batch)).numpy()
        np.testing.assert_allclose(served, clipped, atol=1e-5)


@pytest.mark.parametrize(
    "size, tile",
    [
        ((1080, 1920), (1080, 1920)),  # fits: one tile, the frame
        ((2160, 3840), (1112, 1952)),  # 4K UHD: 2 x 2, 5 % more pixels than the frame
        ((4320, 7680), (1128, 1968)),  # 8K: 4 x 4
        ((1440, 2560), (1440, 1312)),  # 1440p: two columns
        ((200, 16000), (200, 8032)),  # a strip: cut along its length only
    ],
)
def test_even_tiles_are_the_fewest_that_fit_cut_evenly(size, tile):
    from bdinn.runtime.debander import HOST_TILE_PIXELS
    from bdinn.runtime.processing import even_tile

    assert even_tile(size, 64, max_pixels=HOST_TILE_PIXELS) == tile
    assert tile[0] * tile[1] <= HOST_TILE_PIXELS


@pytest.mark.parametrize(
    "size, tile, overlap", [(232, 120, 60), (2160, 1112, 64), (1083, 200, 20), (100, 64, 32)]
)
def test_tiles_start_on_the_frames_8_px_grid_and_cover_it(size, tile, overlap):
    """The network halves the resolution three times: a tile off the 8-px grid computes another
    picture (a random network's tiles 60 px apart differed from the whole frame by 0.13)."""
    from bdinn.runtime.processing import _starts

    starts = _starts(size, tile, overlap)
    assert all(start % 8 == 0 for start in starts) and starts[0] == 0
    assert 0 <= starts[-1] + tile - size <= 7  # the last tile reaches the edge, at most 7 px narrower
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))  # overlaps kept


def test_small_tiles_on_large_frames_and_large_overlaps_still_find_a_layout(models):
    """Thousands of tiles (--tile 32 on 16384 px), and an --overlap meant for engine tiles on
    the CPU, where it may not refuse a frame."""
    from bdinn.runtime.debander import HOST_TILE_PIXELS
    from bdinn.runtime.processing import even_tile

    assert even_tile((2160, 3840), 24, max_shape=(48, 48), min_shape=(48, 48)) == (48, 48)
    assert even_tile((16384, 16384), 16, max_shape=(32, 32), min_shape=(32, 32)) == (32, 32)
    wide = Debander.open(models["torch"], overlap=1500).tile_for((2160, 3840))
    assert wide is not None and wide[0] * wide[1] <= HOST_TILE_PIXELS


def test_frames_beyond_an_engine_profile_run_in_even_tiles_within_it():
    """An 8K frame with the default --max 2160x3840 profile: 3 x 3 tiles of 1488 x 2608, 5 % more
    pixels than the frame, where 2160-px squares (the old rule) made 12 tiles and 69 % more."""
    from bdinn.runtime.processing import even_tile

    assert even_tile((4320, 7680), 64, max_shape=(2160, 3840)) == (1488, 2608)
    assert even_tile((2160, 3840), 64, max_shape=(1080, 1920)) == (768, 1328)
    assert even_tile((1000, 5000), 64, max_shape=(2160, 3840)) == (1000, 2536)  # wide only
    # A fixed 1080p profile: smaller tiles would only be padded up to it.
    assert even_tile((2160, 3840), 64, max_shape=(1080, 1920), min_shape=(1080, 1920)) == (1080, 1920)


def test_batches_and_mixed_sizes(models, sky):
    deband = Debander.open(models["torch"])
    small = sky[:40, :56]
    outs = deband([sky, small, sky])
    assert [o.shape for o in outs] == [sky.shape, small.shape, sky.shape]
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[0], deband(sky))


def test_gray_rgba_and_smallest_frames(models, sky):
    deband = Debander.open(models["torch"])
    gray = sky[:, :, 1]
    assert deband(gray).shape == gray.shape
    alpha = np.arange(sky.shape[0] * sky.shape[1], dtype=np.uint32).reshape(sky.shape[:2]) % 256
    rgba = np.dstack([sky, alpha.astype(np.uint8)])
    out = deband(rgba)
    assert out.shape == rgba.shape
    np.testing.assert_array_equal(out[:, :, 3], rgba[:, :, 3])
    out16 = deband(rgba, bit_depth=16)
    np.testing.assert_array_equal(out16[:, :, 3], rgba[:, :, 3].astype(np.uint16) * 257)
    assert deband(sky[:16, :16]).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="at least 16x16"):
        deband(sky[:15, :40])
    with pytest.raises(TypeError, match="uint8 or uint16"):
        deband(sky.astype(np.float32))


def test_every_layout_comes_back_as_given(models, sky):
    deband = Debander.open(models["torch"])
    gray = sky[:, :, 1]
    out = deband(gray[:, :, None])
    assert out.shape == (*gray.shape, 1)
    np.testing.assert_array_equal(out[:, :, 0], deband(gray))
    alpha = (np.arange(gray.size) % 256).astype(np.uint8).reshape(gray.shape)
    with_alpha = deband(np.dstack([gray, alpha]))  # gray + alpha
    assert with_alpha.shape == (*gray.shape, 2)
    np.testing.assert_array_equal(with_alpha[:, :, 0], out[:, :, 0])
    np.testing.assert_array_equal(with_alpha[:, :, 1], alpha)
    for depth in (0, 12, "16"):
        with pytest.raises(
            ValueError, match=f"bit_depth must be 8 or 16 \\(None: the input's\\), got {depth!r}"
        ):
            deband(sky, bit_depth=depth)


def test_sixteen_bit_png_round_trip_is_bit_exact(models, sky, tmp_path):
    out = Debander.open(models["torch"])(sky, bit_depth=16)
    assert len(np.unique(out)) > len(np.unique(sky))  # finer than 8 bits
    write_image(tmp_path / "out.png", out)
    back = read_image(tmp_path / "out.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, out)


def test_dither_breaks_up_steps_but_keeps_the_mean():
    ramp = np.tile(np.linspace(0.2, 0.21, 256, dtype=np.float32), (64, 1))[:, :, None].repeat(3, 2)
    plain = from_float(ramp, 8)
    dithered = from_float(ramp, 8, dither=np.random.default_rng(0))
    assert np.abs(dithered.astype(int) - plain.astype(int)).max() == 1
    # Plain rounding makes a few wide flat bands; dither makes the column means follow the ramp.
    error_plain = np.abs(plain.mean(axis=(0, 2)) / 255 - ramp[0, :, 0]).mean()
    error_dither = np.abs(dithered.mean(axis=(0, 2)) / 255 - ramp[0, :, 0]).mean()
    assert error_dither < error_plain / 2
    # Triangular (TPDF): on an exact level, |r1 - r2| > 1/2 a quarter of the time, half each way;
    # rectangular noise of one LSB would move none of them, of two LSB half of them.
    flat = np.full(200_000, 100 / 255, np.float32)
    level = from_float(flat, 8, dither=np.random.default_rng(1)).astype(int)
    assert set(np.unique(level)) == {99, 100, 101}
    assert abs(np.mean(level == 101) - 0.125) < 0.005 and abs(np.mean(level == 99) - 0.125) < 0.005
    # At the ends the clip would keep half the noise (black lifted by 1/8 level): none is added there.
    ends = np.repeat(np.float32([0, 1, 1 / 255]), 100_000)
    for depth, top in ((8, 255), (16, 65535)):
        out = from_float(ends, depth, dither=np.random.default_rng(2)).astype(int)
        assert (out[:100_000] == 0).all() and (out[100_000:200_000] == top).all()
    assert abs(out[200_000:].mean() - 257) < 3 and (out[200_000:] != 257).mean() > 0.2  # dithered


def test_dither_option_is_seeded(models, sky):
    deband = Debander.open(models["torch"])
    a, b = deband(sky, dither=True, seed=3), deband(sky, dither=True, seed=3)
    np.testing.assert_array_equal(a, b)
    assert 0 < np.count_nonzero(a != deband(sky)) < a.size


def test_one_instance_serves_several_threads(models, sky):
    deband = Debander.open(models["torch"])
    expected = deband(sky)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(deband(sky))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "caller threads still running after 5 minutes"
    assert not errors and len(results) == 9
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_torch_tensor_path(models, sky):
    deband = Debander.open(models["torch"])
    tensor = torch.from_numpy(sky.astype(np.float32).transpose(2, 0, 1) / 255)
    out = deband.tensor(tensor)
    assert out.shape == tensor.shape and out.dtype == torch.float32
    expected = deband.infer(tensor[None].numpy())[0]
    assert np.abs(out.numpy() - expected).max() <= 1e-6


def test_the_output_stays_within_max_change_of_the_input(models, sky):
    """The limit clips what the network moves too far, tiled or not, and leaves the rest as it was."""
    batch = sky.astype(np.float32).transpose(2, 0, 1)[None] / 255
    for tile in (None, 64):
        raw = Debander.open(models["torch"], tile=tile, overlap=16, max_change=None).infer(batch)
        moved = np.abs(raw - batch)
        assert (moved > 3 / 255).mean() > 0.05  # the perturbed network moves many values further
        limited = Debander.open(models["torch"], tile=tile, overlap=16, max_change=3).infer(batch)
        assert limited.dtype == np.float32
        assert np.abs(limited - batch).max() <= 3 / 255 + 1e-6
        inside = moved <= 3 / 255
        assert np.abs(limited - raw)[inside].max() <= 1e-6  # float rounding of (out - in) + in
        assert np.abs(limited - raw).max() > 0.01
    default = Debander.open(models["torch"])
    assert default.describe()["max_change"] == DEFAULT_MAX_CHANGE == 2
    raw = Debander.open(models["torch"], max_change=None).infer(batch)
    assert np.abs(default.infer(batch) - np.clip(raw, batch - 2 / 255, batch + 2 / 255)).max() <= 1e-6


@pytest.mark.parametrize("threads", [1, 8])
def test_black_and_white_come_back_exactly_unless_the_frame_is_posterised(models, sky, monkeypatch, threads):
    """Letterbox bars and white areas: the network moves them, the served output does not, in
    every band of rows and on the tensor path alike. In a 5-bit frame a run at 0 may be a band
    whose true values reach 4 levels up, which the network rebuilds: there its output stands."""
    monkeypatch.setattr(processing, "_THREADS", threads)  # 8: bands of rows 0-65, 66-132, 133-199
    frame = np.zeros((200, 128, 3), np.uint8)
    frame[70:130] = sky[:60]  # a picture between black bars that cross the bands' edges
    frame[150:, 40:90] = 255
    posterised = np.rint(np.rint(frame / 255 * 31) / 31 * 255).astype(np.uint8)
    batch = np.stack([frame, posterised]).astype(np.float32).transpose(0, 3, 1, 2) / 255
    assert processing.posterised(batch).tolist() == [False, True]
    raw = Debander.open(models["torch"], max_change=None).infer(batch)
    served = Debander.open(models["torch"]).infer(batch)
    limited = np.clip(np.clip(raw, batch - 2 / 255, batch + 2 / 255), 0, 1)
    ends = (batch == 0) | (batch == 1)
    assert ends[0].mean() > 0.4 and (np.abs(limited - batch)[ends] > 0.5 / 255).mean() > 0.1  # moved
    np.testing.assert_array_equal(served[0][ends[0]], batch[0][ends[0]])
    assert np.abs(served[0] - limited[0])[~ends[0]].max() <= 1e-6
    assert np.abs(served[1] - limited[1]).max() <= 1e-6
    on_tensors = limit_change_tensor(torch.from_numpy(batch), torch.from_numpy(raw), 2.0).clamp(0, 1)
    assert np.abs(on_tensors.numpy() - served).max() <= 1e-6


@pytest.mark.parametrize("max_change", [2.0, None])
def test_nan_from_a_model_on_the_tensor_path_leaves_the_input(max_change):
    """torch.clamp keeps NaN as np.clip does; a GPU caller got it back as the frame."""
    batch = torch.rand(1, 3, 8, 8)
    out = batch.clone()
    out[0, 1, 2:4, 5] = float("nan")
    limited = limit_change_tensor(batch, out, max_change)
    assert not limited.isnan().any() and torch.equal(limited[0, 1, 2:4, 5], batch[0, 1, 2:4, 5])
    assert torch.equal(limited, batch)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "off", "2", True])
def test_max_change_must_be_a_positive_number(models, value):
    with pytest.raises(ValueError, match="max_change must be a positive number of 8-bit levels"):
        Debander.open(models["torch"], max_change=value)


def test_options_are_fixed_when_the_model_opens(models, sky):
    """Assigned after open they were never checked: a NaN max_change made every output black."""
    with Debander.open(models["torch"], tile=64) as deband:
        for name, value in (("max_change", float("nan")), ("tile", 32), ("overlap", 0)):
            with pytest.raises(AttributeError, match=f"property '{name}' of 'Debander' object has no setter"):
                setattr(deband, name, value)
        assert (deband.tile, deband.overlap, deband.max_change) == (64, 32, 2.0)
        assert deband(sky[:64, :64]).max() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "missing.safetensors"}, "no such model file"),
        ({"path": __file__}, "unknown model file type"),
        (
            {"path": Path(__file__).parent},
            r"tests: is a folder; give the model file \(\.onnx",
        ),  # "no such file"
        ({"backend": "tensorflow"}, "unknown backend"),
        ({"backend": "tensorrt"}, "no TensorRT engine is bundled"),
        ({"device": "gpu"}, "device must be cpu, cuda or cuda:N, got 'gpu'"),
        ({"device": "cuda:first"}, "device must be cpu, cuda or cuda:N"),
        ({"device": 0}, "device must be cpu, cuda or cuda:N, got 0"),  # was re's own TypeError
        ({"precision": "int8"}, "precision must be fp32 or fp16 .None: the model file's., got 'int8'"),
    ],
)
def test_open_errors_are_one_line(kwargs, message):
    with pytest.raises(BackendError, match=message) as info:
        Debander.open(**kwargs)
    assert "\n" not in str(info.value)


def test_an_engine_on_the_cpu_is_refused(tmp_path):
    (tmp_path / "model.plan").write_bytes(b"an engine")
    with pytest.raises(BackendError, match=r"model\.plan: TensorRT engines run on a GPU, not on the CPU"):
        Debander.open(tmp_path / "model.plan", device="cpu")


def test_fp16_on_cpu_is_refused(models):
    with pytest.raises(BackendError, match="fp16 runs on CUDA only"):
        Debander.open(models["torch"], device="cpu", precision="fp16")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tile": 64.0}, "tile must be a multiple of 8 and at least 32, got 64.0"),
    ({"tile": True}, "tile must be"),
    ({"tile": 64, "overlap": 3.5}, "overlap must be a whole number between 0 and half the tile, got 3.5"),
])  # fmt: skip
def test_tile_and_overlap_must_be_whole_numbers(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Debander.open(models["torch"], **kwargs)
    numpy_ints = Debander.open(
        models["torch"], tile=np.int64(64), overlap=np.int32(8), max_change=np.float32(2)
    )
    assert (numpy_ints.tile, numpy_ints.overlap, numpy_ints.max_change) == (64, 8, 2.0)


def test_outputs_are_c_contiguous_in_every_layout(models, sky):
    """Pipes (stdin.write), OpenCV drawing and memoryview casts need C order, whatever the layout."""
    deband = Debander.open(models["torch"])
    alpha = np.full(sky.shape[:2], 200, np.uint8)
    layouts = (sky, sky[:, :, 1], sky[:, :, 1:2], np.dstack([sky, alpha]), np.dstack([sky[:, :, 0], alpha]))
    for frame in layouts:
        for depth in (8, 16):
            out = deband(frame, bit_depth=depth)
            assert out.flags.c_contiguous, (frame.shape, depth)
            assert len(memoryview(out).cast("B")) == out.nbytes


def test_big_endian_samples_are_read_as_their_values(models, sky):
    deband = Debander.open(models["torch"])
    native = sky.astype(np.uint16) * 257
    np.testing.assert_array_equal(deband(native.astype(">u2")), deband(native))


def test_precision_that_matches_an_onnx_file_is_accepted(models, sky):
    models["onnx"]
    assert Debander.open(models["onnx"], precision="fp32").describe()["precision"] == "fp32"
    with pytest.raises(BackendError, match=r"tiny\.onnx: this \.onnx file is fp32, fixed at export"):
        Debander.open(models["onnx"], precision="fp16")


def test_bad_thread_count_names_the_variable(models, monkeypatch):
    models["onnx"]
    for value in ("two", "99999999999"):  # the second was ONNX Runtime's TypeError traceback
        monkeypatch.setenv("BDINN_ORT_THREADS", value)
        with pytest.raises(
            BackendError, match=rf"BDINN_ORT_THREADS must be a number of threads .* got '{value}'"
        ):
            Debander.open(models["onnx"])


@pytest.mark.parametrize("key", ["torch", "onnx"])
def test_a_closed_debander_says_so(models, sky, key):
    models[key]
    deband = Debander.open(models[key])
    deband.close()
    deband.close()  # a second close is harmless
    calls = (
        lambda: deband(sky),
        lambda: deband([]),  # an empty list answered [] as if open
        lambda: deband.tensor(torch.zeros(1, 3, 32, 32)),
        lambda: deband.tile_for((10, 10)),  # answered None and a dict of no providers
        deband.describe,
    )
    for call in calls:
        with pytest.raises(BackendError, match="this Debander is closed; open the model again"):
            call()
    with pytest.raises(BackendError, match="closed"):  # the backend itself let go of its model
        deband.backend.infer(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.parametrize("key", ["torch", "onnx"])
def test_a_debander_is_neither_copied_nor_pickled(models, sky, key):
    """copy.copy shared the model, so closing the copy closed the original under its user; deepcopy
    and pickle failed with the backend's own TypeError (an InferenceSession, a thread lock)."""
    import copy
    import pickle

    models[key]
    with Debander.open(models[key]) as deband:
        for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match=r"^a Debander holds an open model and cannot be copied or "):
                attempt(deband)
        assert deband(sky).shape == sky.shape  # still whole


def test_a_pytorch_model_closed_by_another_thread_mid_call_says_so(models):
    """close() from another thread between a call's check and its hand-over to the CPU worker:
    the worker's "cannot schedule new futures after shutdown" RuntimeError reached the caller."""
    deband = Debander.open(models["torch"])
    deband.backend._cpu_thread.shutdown()  # the state close() leaves for a moment before the model goes
    with pytest.raises(BackendError, match="this PyTorch model is closed; open it again"):
        deband.backend.infer(np.zeros((1, 3, 32, 32), np.float32))
    deband.close()


def test_tensor_input_is_checked_the_same_on_every_backend(models):
    for key in ("torch", "onnx"):
        models[key]
        deband = Debander.open(models[key])
        for bad in (
            torch.full((1, 3, 32, 32), 128, dtype=torch.uint8),
            torch.rand(32, 32, 3),
            torch.rand(2, 32, 32),
        ):
            with pytest.raises(
                ValueError, match=r"expected a float \[N, 3, H, W\] or \[3, H, W\] tensor in \[0, 1\]"
            ):
                deband.tensor(bad)
        wanted = torch.rand(1, 3, 32, 32, requires_grad=True)  # a training loop's tensor: served, not traced
        out = deband.tensor(wanted)
        assert out.shape == wanted.shape and out.dtype == torch.float32 and not out.requires_grad
        with pytest.raises(TypeError, match=r"expected a torch tensor \(numpy frames: call the Debander\)"):
            deband.tensor(np.zeros((3, 32, 32), np.float32))
        with pytest.raises(
            TypeError, match=r"expected a float \[N, 3, H, W\] numpy batch in \[0, 1\], got uint8"
        ):
            deband.infer(np.zeros((1, 3, 32, 32), np.uint8))  # was run as 0..255 floats
        with pytest.raises(TypeError, match="expected a numpy frame or a list of them, got NoneType"):
            deband(None)
        frame = np.zeros((32, 32, 3), np.uint8)
        with pytest.raises(TypeError, match="dither must be True or False, got 'yes'"):
            deband(frame, dither="yes")  # was taken as True
        numpy_flag = deband(frame, dither=np.bool_(True), seed=1)  # was refused, unlike numpy integers
        assert np.array_equal(numpy_flag, deband(frame, dither=True, seed=1))
        for seed, error in (("x", TypeError), (-1, ValueError), (1.5, TypeError)):
            with pytest.raises(error, match="seed must be a whole number >= 0 or None"):
                deband(frame, dither=True, seed=seed)
        # Iterated as lists of rows, these failed deep inside, or not at all until a tiled frame
        with pytest.raises(TypeError, match=r"got Tensor: pass np.asarray\(it\) \(or Debander.tensor for"):
            deband(torch.zeros(32, 32, 3, dtype=torch.uint8))
        with pytest.raises(TypeError, match=r"expected a numpy frame, got memoryview: pass np.asarray"):
            deband(memoryview(frame))
        with pytest.raises(
            TypeError,
            match=r"frame 1 of the list: expected uint8 or uint16 samples, got float32 \(float frames ",
        ):
            deband([frame, frame.astype(np.float32)])
        with pytest.raises(TypeError, match="progress must be a callable progress"):
            deband(frame, progress=5)
        with pytest.raises(ValueError, match=r"\(2, 32, 32, 3\): for several frames pass a list of them"):
            deband(np.stack([frame, frame]))  # a video's frames as one array: say that a list is taken
        with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\): an N x 3 x H x W batch of floats in"):
            deband(np.zeros((2, 3, 32, 32), np.uint8))
        for empty in [(0, 3, 32, 32), (1, 3, 0, 20)]:  # a zero side was numpy's np.pad error
            with pytest.raises(
                ValueError, match=rf"H and W at least 1, got shape \({empty[0]}, 3, {empty[2]}"
            ):
                deband.infer(np.zeros(empty, np.float32))
        with pytest.raises(ValueError, match=r"tensor in \[0, 1\], got torch.float32 \[0, 3, 32, 32\]"):
            deband.tensor(torch.zeros(0, 3, 32, 32))


@pytest.mark.parametrize("max_change", [8, None])
def test_tensor_and_float_output_stay_in_range(models, max_change):
    """White and black inputs: the network (and the limit) reach past 1 and 0, which a caller's
    8-bit cast wraps (1.008 * 255 -> 1: white turned black); infer and tensor keep [0, 1]."""
    deband = Debander.open(models["torch"], max_change=max_change)
    for value in (0.0, 1.0):
        batch = np.full((1, 3, 32, 32), value, np.float32)
        raw = deband.backend.infer(batch)
        assert (raw < 0).any() or (raw > 1).any()  # the network alone leaves [0, 1] here
        for out in (deband.infer(batch), deband.tensor(torch.from_numpy(batch)).numpy()):
            assert out.min() >= 0 and out.max() <= 1


def test_bad_options_are_refused_before_the_model_loads(tmp_path):
    with pytest.raises(
        ValueError, match="overlap must be a whole number between 0 and half the tile, got 33"
    ):
        Debander.open(tmp_path / "absent.onnx", tile=64, overlap=33)  # not "no such model file"


def test_default_model_path_refuses_an_unknown_backend():
    from bdinn.runtime.debander import default_model_path

    with pytest.raises(BackendError, match=r"unknown backend 'bogus' \(choose from"):
        default_model_path("bogus")


class _Profiled:
    """A backend with an engine's fixed profile that refuses frames outside it, as TensorRT does;
    it returns its input (the tiling is under test, not a network)."""

    name, precision, device = "profiled", "fp32", "cuda"
    min_size, max_size = (64, 64), (360, 640)
    tile_grid = 8

    def infer(self, batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[-2:]
        assert 64 <= h <= 360 and 64 <= w <= 640, f"{h}x{w} is outside the profile"
        return batch.copy()


@pytest.mark.parametrize(("tile", "size", "tiles"), [
    (1024, (1080, 1920), (296, 504)),  # the tile asked for is larger than the profile: as without one
    (1024, (600, 600), (320, 600)),  # a frame within the tile but not the profile is still cut
    (256, (1080, 1920), (248, 248)),  # a tile within the profile is kept
    (None, (1080, 1920), (296, 504)),
    (None, (300, 600), None),
])  # fmt: skip
def test_a_tile_larger_than_the_engine_profile_is_cut_to_it(tile, size, tiles):
    """--tile 1024 with a plan built for at most 360x640 ran whole 600x600 frames and 576x992
    tiles, each refused by the engine; the tile is now the smaller of the two."""
    deband = Debander(_Profiled(), tile=tile, overlap=32)
    assert deband.tile_for(size) == tiles
    frame = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    np.testing.assert_allclose(deband.infer(frame), frame, atol=1e-6)


def test_the_default_overlap_fits_a_small_engine_profile():
    """A plan built for at most 64x64 refused every larger frame: 'no tiles of at most 64 x 64
    cover 100 x 100 with 64-px overlaps (lower --overlap)', though no overlap had been asked for."""

    class Small(_Profiled):
        min_size, max_size = (16, 16), (64, 64)

        def infer(self, batch: np.ndarray) -> np.ndarray:
            assert max(batch.shape[-2:]) <= 64, batch.shape
            return batch.copy()

    deband = Debander(Small())
    assert deband.overlap == 32 and deband.tile_for((100, 100)) is not None
    frame = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    assert np.array_equal(deband(frame), frame)
    assert Debander(Small(), overlap=16).overlap == 16  # one asked for is kept


def test_tensor_pads_a_frame_below_the_backends_minimum(models):
    """An engine's profile has a minimum (bdinn-export --min, 64x64 by default): a smaller frame
    given as a tensor is padded as a numpy frame is, instead of reaching the engine unpadded."""
    deband = Debander.open(models["torch"])
    deband.backend.min_size = (48, 64)  # as a TensorRT engine's profile would say
    sizes = []
    for name in ("infer", "infer_tensor"):
        served = getattr(deband.backend, name)
        recorded = lambda batch, served=served: sizes.append(tuple(batch.shape[-2:])) or served(batch)  # noqa: E731
        setattr(deband.backend, name, recorded)
    frame = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    out = deband.tensor(frame)
    assert sizes and set(sizes) == {(48, 64)} and out.shape == frame.shape  # was 40x56, unpadded
    assert torch.equal(out, torch.from_numpy(deband.infer(frame.numpy())))


@pytest.mark.parametrize("size", [(40, 200), (200, 40), (20, 30)])
def test_a_frame_below_the_profile_on_either_side_is_mirror_padded_and_cropped_back(size):
    """_Profiled refuses anything under 64 on a side; only a frame under it on both sides was
    padded by the test above, and nothing checked what the padding holds."""
    seen = []

    class Recording(_Profiled):
        def infer(self, batch: np.ndarray) -> np.ndarray:
            seen.append(batch.copy())
            return super().infer(batch)

    deband = Debander(Recording(), max_change=None)
    frame = np.random.default_rng(2).random((1, 3, *size), dtype=np.float32)
    np.testing.assert_array_equal(deband.infer(frame), frame)
    [padded] = seen
    h, w = size
    assert padded.shape[-2:] == (max(h, 64), max(w, 64))
    np.testing.assert_array_equal(padded[..., :h, :w], frame)
    if w < 64:  # the columns beyond the frame mirror it: d c b a | a b c d
        np.testing.assert_array_equal(padded[..., :h, w : 2 * w], frame[..., ::-1][..., : min(w, 64 - w)])


def test_a_list_of_frames_gets_fresh_dither_noise_in_each(models, sky):
    deband = Debander.open(models["torch"])
    first, second = deband([sky, sky], dither=True, seed=3, bit_depth=8)
    assert not np.array_equal(first, second)
    again = deband([sky, sky], dither=True, seed=3, bit_depth=8)
    assert np.array_equal(again[0], first) and np.array_equal(again[1], second)  # seeded


def test_a_frames_dither_depends_on_the_frames_before_it_alone(models, sky):
    """The noise was drawn per frame size: appending a frame of the first one's size changed the
    noise of a frame of another size between them."""
    deband = Debander.open(models["torch"])
    a, b = sky[:64, :96], sky[:72, :96]
    kwargs = {"dither": True, "seed": 7, "bit_depth": 8}
    assert np.array_equal(deband([a, b], **kwargs)[1], deband([a, b, a], **kwargs)[1])


def test_a_big_endian_16_bit_frame_gets_the_8_bit_warning_too(models, sky):
    deband = Debander.open(models["onnx-uint8"])
    said = r"so 16-bit pictures and output \(a video.s 10-bit output too\) are rounded to 8-bit levels"
    with pytest.warns(UserWarning, match=said):
        deband((sky.astype(np.uint16) * 257).astype(">u2"))


def test_the_pytorch_cpu_backend_serves_a_forked_child(models, sky):
    """A forked child (a data loader worker) inherits the inference thread's executor but not the
    thread: its first call waited forever."""
    import multiprocessing

    deband = Debander.open(models["torch"], device="cpu")
    expected = deband(sky)
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    child = fork.Process(target=lambda: results.put(deband(sky)))
    child.start()
    child.join(120)
    hung = child.is_alive()
    child.kill()
    assert not hung and child.exitcode == 0
    assert np.array_equal(results.get(timeout=10), expected)


def test_a_strips_short_side_leaves_the_long_sides_overlap_whole():
    """Tiles of a 24 x 300 strip are 24 x 64: the 32-px overlap was halved to 12 on both axes
    (half the short side), so the long axis faded over 12 px where 32 were asked for, and the
    bundled model's tiles differed from the whole strip by 0.47 levels instead of 0.24."""
    from bdinn.runtime.processing import run_tiled

    lefts: list[int] = []
    batch = np.random.default_rng(0).random((1, 3, 24, 300), dtype=np.float32)

    def record(window: np.ndarray) -> np.ndarray:
        lefts.append(int(np.flatnonzero(batch[0, 0, 0] == window[0, 0, 0, 0])[0]))
        return window

    out = run_tiled(record, batch, (24, 64), 32)
    assert np.allclose(out, batch, atol=1e-6)
    assert len(lefts) > 2 and max(np.diff(lefts)) <= 64 - 32  # neighbours share 32 px
    ramp = np.linspace(0.3, 0.6, 300, dtype=np.float32)[None, :] + np.linspace(0, 0.05, 24)[:, None]
    strip = np.round(np.broadcast_to(ramp, (1, 3, 24, 300)) * 31).astype(np.float32) / 31  # 5-bit bands
    whole = Debander.open(max_change=None).infer(strip)
    tiled = Debander.open(tile=64, max_change=None).infer(strip)
    assert np.abs(tiled - whole).max() * 255 < 0.35


def test_gray_output_is_the_mean_of_the_colour_output(models, sky):
    """A gray frame runs as three equal channels; what comes back is their mean, not one of them."""
    deband = Debander.open(models["torch"])
    gray = sky[:, :, 1]
    rgb = deband(np.dstack([gray] * 3), bit_depth=16).astype(np.float64)
    out = deband(gray, bit_depth=16).astype(np.float64)
    assert np.abs(out - rgb.mean(axis=2)).max() <= 1  # rounding
    assert np.abs(rgb[:, :, 0] - rgb[:, :, 2]).max() > 1  # the network's channels differ: it matters


def test_a_coarse_pass_model_is_tiled_on_its_16_px_grid(tmp_path):
    """The coarse pass halves the resolution once more than the network: tiles on the 8-px grid
    (232 px in tiles of 120 sharing 60 start at 56) computed another picture."""
    import dataclasses

    from common import TINY, perturbed_tiny

    from bdinn.runtime.processing import run_tiled
    from bdinn.train.checkpoint import save_checkpoint

    model = perturbed_tiny(config=dataclasses.replace(TINY, coarse_pass=True))
    ramp = np.linspace(0.3, 0.5, 232, dtype=np.float32)[None, :] + np.linspace(0, 0.1, 200)[:, None]
    batch = np.repeat((np.round(ramp * 63) / 63).astype(np.float32)[None, None], 3, axis=1)
    checkpoint = save_checkpoint(tmp_path / "coarse.safetensors", model, config_name=None, step=1)
    deband = Debander.open(checkpoint, max_change=None, tile=120, overlap=60)
    assert deband.backend.tile_grid == 16
    whole = deband.backend.infer(batch)
    on_grid = run_tiled(deband.backend.infer, batch, (120, 120), 60, grid=16)
    off_grid = run_tiled(deband.backend.infer, batch, (120, 120), 60, grid=8)
    np.testing.assert_array_equal(deband.infer(batch), np.clip(on_grid, 0, 1))  # what Debander runs
    assert np.abs(on_grid - whole).max() < 0.01 < np.abs(off_grid - whole).max()


def test_pytorch_out_of_memory_is_a_memory_error():
    """torch's CPU allocator raises a bare RuntimeError: bdinn-run's 'not enough memory for it (try
    --tile 1024)' never fired, and the user got a traceback."""
    deband = Debander.open(default_model_path("torch"), device="cpu")
    deband.backend.model = Unallocatable()
    with deband, pytest.raises(MemoryError, match="DefaultCPUAllocator: can't allocate memory"):
        deband(np.zeros((32, 32, 3), np.uint8))
