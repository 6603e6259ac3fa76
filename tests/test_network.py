"""BDINN's structure: exact invertibility, sizes, and the paper's parameter / MAC counts."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from common import TINY, perturbed_tiny

from bdinn.train.complexity import count_macs
from bdinn.train.network import (
    CONFIGS,
    BandedDeformConv2d,
    BDINNConfig,
    build_model,
    count_parameters,
    dense_coupling,
    flat_gate,
    get_config,
    pad_to_multiple,
    upsample2_bicubic,
    with_coarse_pass,
)


def randomize(model: torch.nn.Module, scale: float = 0.01) -> torch.nn.Module:
    """Move every weight off its near-identity initialisation, so inversion is really exercised."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
        for m in model.modules():
            if isinstance(m, BandedDeformConv2d):
                m.head.weight.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("name", ["lite", "paper"])
def test_inverse_reconstructs_input(name):
    model = randomize(build_model(name)).double().eval()
    torch.manual_seed(1)
    y1 = torch.rand(1, 3, 32, 48, dtype=torch.float64)
    y2 = torch.rand(1, 3, 32, 48, dtype=torch.float64)
    with torch.no_grad():
        x, b = model.decompose(y1, y2)
        # The map is far from the identity: inversion is not trivially satisfied.
        assert (x - y1).abs().max() > 0.5
        r1, r2 = model.reconstruct(x, b)
        assert (r1 - y1).abs().max() < 1e-6 and (r2 - y2).abs().max() < 1e-6
        model.float()
        x, b = model.decompose(y1.float(), y2.float())
        r1, r2 = model.reconstruct(x, b)
    assert (r1 - y1.float()).abs().max() < 1e-3 and (r2 - y2.float()).abs().max() < 1e-3


@pytest.mark.parametrize("name", ["lite", "paper"])
def test_untrained_network_is_the_identity(name):
    """Zero-initialised sub-network outputs and mirrored split/concat orders: X = Y at start."""
    y = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        x, b = build_model(name).decompose(y, y)
    assert torch.allclose(x, y, atol=1e-6) and torch.allclose(b, y, atol=1e-6)


# README's table of configurations states these counts; the network is deterministic, so exactly.
# The paper reports 5.885 M parameters and 37.4 G "FLOPs", which a MAC-counting tool counted as MACs:
# README gives `paper`'s difference from them (-1.3 %, +0.6 %).
README_COUNTS = {"paper": (5_809_960, 37_633_132_800), "lite": (1_640_392, 5_754_325_248)}


@pytest.mark.parametrize("name", ["lite", "paper"])
def test_counts_are_the_ones_readme_states(name):
    model = build_model(name)
    assert (count_parameters(model), count_macs(model, 256, 256)) == README_COUNTS[name]


def test_mac_count_scales_with_pixels():
    model = build_model("lite")
    small = count_macs(model, 64, 64)
    big = count_macs(model, 128, 256)
    # Per-pixel work scales exactly; only the channel attention's pooled 1x1 convs do not.
    assert abs(big / (8 * small) - 1) < 1e-3


@pytest.mark.parametrize(("h", "w"), [(100, 150), (37, 53), (16, 16), (9, 12)])
def test_any_size_is_padded_and_cropped_back(h, w):
    model = build_model("lite").eval()
    y = torch.rand(1, 3, h, w)
    with torch.no_grad():
        out = model(y)
    assert out.shape == (1, 3, h, w)
    assert torch.isfinite(out).all()


def test_decompose_rejects_sizes_not_multiple_of_8():
    model = build_model("lite")
    y = torch.rand(1, 3, 20, 24)
    with pytest.raises(ValueError, match="divisible by 8"):
        model.decompose(y, y)


def test_log_scale_is_soft_clamped_for_float16():
    coupling = dense_coupling(8, growth=4, depth=1, clamp=2.0)
    s = coupling._log_scale(torch.tensor([-1e6, -3.0, 0.0, 3.0, 1e6]))
    assert s.abs().max() <= 2.0
    assert torch.exp(s).max() < 7.4  # exp(clamp): far below float16's 65504
    assert torch.allclose(coupling._log_scale(torch.tensor([1e-3])), torch.tensor([1e-3]), rtol=1e-5)


def test_config_round_trip_and_lookup():
    for config in CONFIGS.values():
        assert BDINNConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown configuration"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown BDINN config keys"):
        BDINNConfig.from_dict({"channels": 3, "depth_of_field": 2})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"growth": [4, 4]}, "growth has 2 entries"),  # was an IndexError deep in the network
        ({"kernel": [3]}, "kernel has 1 entries"),
        ({"channels": 1}, r"channels=1; bdinn debands RGB pictures \(3\)"),  # was a failed split at step 1
        ({"kernel": [3, 4]}, r"kernel=\[3, 4\]; its sizes must be odd"),
        ({"kernel": [1023, 1023]}, r"kernel=\[1023, 1023\]; its sizes must be odd, at most 15"),  # 23 GB
        ({"kernel": [1025, 3]}, r"kernel=\[1025, 3\]; its sizes must be odd, at most 15"),  # not "1..1024"
        ({"banded_impl": "nope"}, "banded_impl='nope'; choose from reference, gridsample, op"),
        ({"coarse_pass": "yes"}, "coarse_pass='yes'; true or false"),
    ],
)
def test_a_config_no_network_can_have_is_refused_up_front(fields, message):
    with pytest.raises(ValueError, match=f"invalid BDINN config: {message}"):
        BDINNConfig.from_dict(fields)


def test_parameter_count_is_deterministic():
    assert count_parameters(build_model("lite")) == count_parameters(build_model("lite"))


def test_coarse_pass_is_stored_only_when_on():
    """Configs written before the field existed (every checkpoint, the bundled model's JSON) keep
    their exact dict, and so their run fingerprints; one with it on says so."""
    assert "coarse_pass" not in get_config("lite").to_dict()
    on = dataclasses.replace(get_config("lite"), coarse_pass=True)
    assert on.to_dict()["coarse_pass"] is True
    assert BDINNConfig.from_dict(on.to_dict()) == on


def test_the_flat_gate_opens_on_flat_areas_and_shuts_near_texture_and_edges():
    y = torch.full((1, 3, 96, 128), 0.5)
    y[..., 64:] = 0.5 + 1 / 255  # a 1-level band step: flat enough
    y[..., :48, 40:41] = 0.0  # a thin dark line
    gate = flat_gate(y)[0, 0]
    assert gate.shape == (96, 128)
    assert gate[80:, 90:].min() > 0.999  # far from the line, across the band step
    assert gate[:40, 36:45].max() < 0.5  # on and beside the line
    assert gate[:40, 5].min() > 0.99 and gate[:40, 80].min() > 0.99
    noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert flat_gate(noise).max() < 1e-3  # texture everywhere


@pytest.mark.parametrize(("h", "w"), [(64, 96), (37, 53)])
def test_the_coarse_pass_changes_only_flat_areas_at_any_size(h, w):
    single = perturbed_tiny()
    double = perturbed_tiny(config=dataclasses.replace(TINY, coarse_pass=True))  # the same weights
    ramp = torch.linspace(0.44, 0.52, w).view(1, 1, 1, w).expand(1, 3, h, w)
    banded = torch.round(ramp * 31) / 31  # 5-bit bands, flat inside
    textured = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert double(textured).shape == (1, 3, h, w)
        # Gate shut everywhere: the full-size pass alone, on the frame padded to a multiple of 16.
        alone = single(pad_to_multiple(textured, 16))[..., :h, :w]
        assert (double(textured) - alone).abs().max() < 1e-5
        moved = (double(banded) - single(pad_to_multiple(banded, 16))[..., :h, :w]).abs().max()
        # Half texture, half flat bands: the textured half, beyond the gate's feather, is the
        # full-size pass alone.
        mixed = torch.cat((textured[..., : w // 2], banded[..., w // 2 :]), dim=-1)
        difference = (double(mixed) - single(pad_to_multiple(mixed, 16))[..., :h, :w]).abs()
    assert moved > 1e-3  # the half-size pass's low frequencies, where the bands are flat
    assert difference[..., : w // 2 - 20].max() < 1e-5 and difference[..., w // 2 :].max() > 1e-4


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 3, 16, 24), (1, 3, 1, 1)])
def test_the_2x_bicubic_convolution_is_f_interpolate(shape):
    """The coarse pass's upsampling, written as a convolution for TensorRT-RTX, borders included."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    expected = F.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)
    assert (upsample2_bicubic(x) - expected).abs().max() < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_gate_opens_on_every_2_level_step_and_shuts_on_every_3_level_one(dtype):
    """A 2-level grey step is flat enough at every grey level, a 3-level one is not, in float32
    and float16 alike: the threshold sat exactly on 2 levels, where rounding decided (open on 208
    of 254 levels in float32, 191 in float16)."""
    for rise, is_open in ((2, True), (3, False)):
        low = torch.arange(0, 256 - rise, dtype=torch.float32).view(-1, 1, 1, 1) / 255
        y = low.expand(-1, 3, 24, 32).clone()
        y[..., 16:] += rise / 255  # the step between columns 15 and 16
        gate = flat_gate(y.to(dtype))[:, 0, 12, 15:17].float()
        assert bool((gate > 0.99).all() if is_open else (gate < 0.5).all()), (rise, dtype)


def test_with_coarse_pass_copies_weights_and_implementation_and_leaves_the_model():
    model = perturbed_tiny()
    model.set_banded_impl("reference")  # as a backend sets it at load time
    on = with_coarse_pass(model)
    assert on.config.coarse_pass and not model.config.coarse_pass
    impls = {m.impl for m in on.modules() if isinstance(m, BandedDeformConv2d)}
    assert impls == {"reference"}
    assert all(
        torch.equal(a, b) for a, b in zip(on.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert with_coarse_pass(on) is on


@pytest.mark.parametrize(("h", "w", "reflected"), [(8, 13, True), (7, 13, False), (16, 21, True)])
def test_padding_reflects_from_a_side_as_long_as_the_multiple(h, w, reflected):
    """Reflection needs the pad to be shorter than the side: a side of exactly 8 reflects too (the
    coarse pass's 16 is the exported graphs' smallest side, and must not be a special case)."""
    y = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(1, 3, h, w)
    multiple = 16 if h == 16 else 8
    padded = pad_to_multiple(y, multiple)
    assert padded.shape[-1] == -(-w // multiple) * multiple
    mirrored = padded[0, 0, 0, w] == y[0, 0, 0, w - 2]  # reflect skips the edge column
    assert bool(mirrored) == reflected


def test_the_coarse_pass_counts_a_quarter_more_macs():
    single = count_macs(build_model("lite"), 256, 256)
    coarse = count_macs(with_coarse_pass(build_model("lite")), 256, 256)
    assert 1.25 * single < coarse < 1.26 * single  # the half-size run, plus the gate and upsampling
