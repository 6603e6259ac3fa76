"""BDINN: the cross-scale invertible debanding network (paper §3), readable top to bottom.

G maps (Y, Y) to (X, B), 2C channels in and out, and is a bijection: every block below has an
exact `inverse`. Layout, coarse to fine:

    (Y, Y) ─ EB1 ─┬─ skip path 1 (DCBs) ──────────────────────────────┐
                  └─ EB2 ─┬─ skip path 2 ──────────────────────┐      │
                          └─ EB3 ─┬─ skip path 3 ───────┐      │      │
                                  └─ 2 BDACBs ─ concat ─ DB3 ─ concat ─ DB2 ─ concat ─ DB1 ─ (X, B)

An encoder block (EB) is pixel-unshuffle x2 then m dense coupling blocks (DCBs); a decoder block
(DB) is m DCBs then pixel-shuffle x2. Each EB output is split by channels into a skip part and an
onward part, and each DB couples the features from below with its skip part (concatenated, so the
DB's first DCB is a coupling between the two scales). Splits, concatenations and (un)shuffles are
permutations, so the whole network stays invertible.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.metrics import BT709_LUMA
from .ops import banded_deform_conv_gridsample, banded_deform_conv_reference, check_attributes


def banded_deform_conv_op(
    x: torch.Tensor,
    geometry: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """The registered operator torch.ops.bdinn.banded_deform_conv: CUDA kernels on GPU tensors,
    and the node the plugin-graph exporter turns into one BandedDeformConv2d ONNX node."""
    from ..plugins import torch_op  # registers the operator on first use

    return torch_op.banded_deform_conv(x, geometry, weight, bias, *dilation)


BANDED_CONV_IMPLS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": banded_deform_conv_reference,
    "gridsample": banded_deform_conv_gridsample,
    "op": banded_deform_conv_op,
}

# Initial stretch of the long kernel axis is 1: 1.75 + 1.25 * tanh(STRETCH_SHIFT) == 1.
STRETCH_SHIFT = math.atanh(-0.6)
LOG2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# Configurations: named, as data.
# --------------------------------------------------------------------------------------------

# Far beyond any trainable BDINN (the paper's: growth 32, depth 4, 2 blocks), and short of what
# makes building one from a checkpoint's JSON alone take minutes and gigabytes.
_MAX_SIZE = 1024  # channels, growth, squeeze ratio
# Each tap of a banded kernel is a sampled copy of its feature map (the paper's kernel: 3 x 5):
# 1023 x 1023, within _MAX_SIZE, took 23 GB on 32-px patches before the machine killed it.
_MAX_KERNEL = 15
_MAX_DEPTH = 64  # convolutions per dense block: with the block counts, what sets the module count
_MAX_REPEATS = 32  # blocks per stage


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class BDINNConfig:
    """Architecture hyper-parameters. Level i (0..2) runs at 1/2**(i+1) resolution."""

    channels: int = 3
    growth: tuple[int, int, int] = (32, 32, 32)  # dense-block growth per level
    dense_depth: int = 4  # conv layers per dense block before its output conv
    encoder_blocks: tuple[int, int, int] = (2, 2, 2)  # m DCBs per EB
    decoder_blocks: tuple[int, int, int] = (2, 2, 2)  # m DCBs per DB
    skip_blocks: tuple[int, int, int] = (1, 1, 1)  # DCBs on each cross-scale short path
    skip_fraction: float = 0.5  # share of each EB output sent down its short path
    bottleneck_blocks: int = 2  # BDACBs
    bottleneck_growth: int = 32
    attention_reduction: int = 4  # channel-attention squeeze ratio
    kernel: tuple[int, int] = (3, 5)  # banded deformable kernel (kh, kw)
    clamp: float = 2.0  # soft clamp of every coupling's log-scale: |s| < clamp
    banded_impl: str = "gridsample"
    # Run the network again on the half-size frame and take its low frequencies where the input is
    # flat: bands twice as wide come within reach, at a quarter more work (BDINN._with_coarse_pass).
    coarse_pass: bool = False

    def __post_init__(self) -> None:
        """Refuse sizes no network has, with the field's name, before torch fails on them."""
        counts = {"channels": self.channels, "bottleneck_growth": self.bottleneck_growth,
                  "attention_reduction": self.attention_reduction}  # fmt: skip
        counts.update({f"growth[{i}]": v for i, v in enumerate(self.growth)})
        repeats = {"bottleneck_blocks": self.bottleneck_blocks}
        for name in ("encoder_blocks", "decoder_blocks", "skip_blocks"):
            repeats.update({f"{name}[{i}]": v for i, v in enumerate(getattr(self, name))})
        bad = [f"{k}={v!r}" for k, v in counts.items() if not _whole(v, 1, _MAX_SIZE)]
        bad += [f"dense_depth={self.dense_depth!r}"] if not _whole(self.dense_depth, 1, _MAX_DEPTH) else []
        bad += [f"{k}={v!r}" for k, v in repeats.items() if not _whole(v, 0, _MAX_REPEATS)]
        if not 0 < self.skip_fraction < 1:
            bad.append(f"skip_fraction={self.skip_fraction!r}")
        if not self.clamp > 0:
            bad.append(f"clamp={self.clamp!r}")
        if bad:
            raise ValueError(
                f"invalid BDINN config: {', '.join(bad)} (sizes are whole numbers 1..{_MAX_SIZE}, "
                f"dense_depth 1..{_MAX_DEPTH}, block counts 0..{_MAX_REPEATS}, 0 < skip_fraction < 1, "
                "clamp > 0)"
            )
        lengths = {"growth": 3, "encoder_blocks": 3, "decoder_blocks": 3, "skip_blocks": 3, "kernel": 2}
        wrong = [f"{k} has {len(getattr(self, k))}" for k, n in lengths.items() if len(getattr(self, k)) != n]
        if wrong:
            raise ValueError(
                f"invalid BDINN config: {', '.join(wrong)} entries (one per level: 3; kernel: 2)"
            )
        if self.channels != 3:
            raise ValueError(
                f"invalid BDINN config: channels={self.channels!r}; bdinn debands RGB pictures (3)"
            )
        if not all(_whole(side, 1, _MAX_KERNEL) and side % 2 for side in self.kernel):
            raise ValueError(
                f"invalid BDINN config: kernel={list(self.kernel)}; its sizes must be odd, at most "
                f"{_MAX_KERNEL} (3, 5)"
            )
        if not isinstance(self.coarse_pass, bool):
            raise ValueError(f"invalid BDINN config: coarse_pass={self.coarse_pass!r}; true or false")
        if self.banded_impl not in BANDED_CONV_IMPLS:
            choices = ", ".join(BANDED_CONV_IMPLS)
            raise ValueError(f"invalid BDINN config: banded_impl={self.banded_impl!r}; choose from {choices}")

    def fewest_tensors(self) -> int:
        """A floor on the network's weight tensors, from the config alone: each coupling block has
        four dense sub-networks of dense_depth + 1 convolutions, each a weight and a bias. A loader
        refuses a sidecar its weights cannot match before building anything: the largest config,
        even built on the meta device, took minutes and gigabytes."""
        stages = (*self.encoder_blocks, *self.decoder_blocks, *self.skip_blocks, self.bottleneck_blocks)
        return 8 * sum(stages) * (self.dense_depth + 1)

    def to_dict(self) -> dict:
        """As JSON stores it; coarse_pass only when on, so configs written before it stay identical."""
        data = asdict(self)
        if not self.coarse_pass:
            del data["coarse_pass"]
        return data

    def same_weights(self, other: BDINNConfig) -> bool:
        """Whether `other` makes a network with exactly these weights: the coarse pass adds none,
        so fine-tuning may turn it on or off."""
        return replace(other, coarse_pass=self.coarse_pass) == self

    @classmethod
    def from_dict(cls, data: dict) -> BDINNConfig:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object of architecture settings, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown BDINN config keys: {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


CONFIGS: dict[str, BDINNConfig] = {
    # The paper's size: ~5.9 M parameters, ~37 G MACs at 3x256x256.
    "paper": BDINNConfig(
        growth=(32, 32, 16),
        dense_depth=4,
        encoder_blocks=(2, 2, 1),
        decoder_blocks=(2, 2, 1),
        skip_blocks=(1, 1, 1),
        bottleneck_blocks=2,
        bottleneck_growth=32,
    ),
    # Small enough to train and run on a 2-core CPU.
    "lite": BDINNConfig(
        growth=(16, 16, 16),
        dense_depth=3,
        encoder_blocks=(1, 1, 1),
        decoder_blocks=(1, 1, 1),
        skip_blocks=(1, 1, 1),
        bottleneck_blocks=2,
        bottleneck_growth=16,
    ),
}


def get_config(name: str) -> BDINNConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown configuration {name!r}; choose one of {sorted(CONFIGS)}") from None


# --------------------------------------------------------------------------------------------
# Banded deformable convolution layer.
# --------------------------------------------------------------------------------------------


def activate_geometry(raw: torch.Tensor) -> torch.Tensor:
    """Head output [N,4,H,W] -> geometry (cos, sin, sx, sy), the operator's input.

    Rotation: (1 + a, b) normalised to unit length. Stretch of the long axis: tanh-bounded to
    (0.5, 3). Whole-grid scale: 1 + softplus(t) - log 2, so that a zero head gives scale 1
    (DESIGN's 1 + softplus would start dilated by 1.69) and the grid never shrinks below 0.31.
    A zero head therefore yields (1, 0, 1, 1): the plain, unrotated grid.

    Worked in float32 whatever the model's precision: the bundled model's heads reach ~1900 on
    1-px patterns, whose square overflows half precision, so the norm was inf and every tap of
    the rotated grid sampled the centre pixel (FP16 outputs up to 88 levels off).
    """
    dtype = raw.dtype
    a, b, s, t = raw.to(torch.promote_types(dtype, torch.float32)).unbind(dim=1)
    c_raw = 1.0 + a
    norm = torch.sqrt(c_raw * c_raw + b * b + 1e-12)
    cos = c_raw / norm
    sin = b / norm
    stretch = 1.75 + 1.25 * torch.tanh(s + STRETCH_SHIFT)
    scale = 1.0 + F.softplus(t) - LOG2
    return torch.stack((cos, sin, scale * stretch, scale), dim=1).to(dtype)


class BandedDeformConv2d(nn.Module):
    """Convolution whose kernel grid is rotated and stretched per pixel (paper §3.3).

    A zero-initialised 3x3 head predicts the grid geometry, so the layer starts as a plain
    convolution with 'same' padding. `impl` names one of BANDED_CONV_IMPLS or is any function
    with the operator's signature (the ONNX exporter swaps in the spelling each graph needs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int] = (3, 5),
        dilation: tuple[int, int] = (1, 1),
        bias: bool = True,
        impl: str | Callable[..., torch.Tensor] = "gridsample",
    ) -> None:
        super().__init__()
        check_attributes(kernel, dilation)
        if not callable(impl) and impl not in BANDED_CONV_IMPLS:
            raise ValueError(f"unknown banded conv implementation {impl!r}")
        self.kernel = tuple(kernel)
        self.dilation = tuple(dilation)
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.head = nn.Conv2d(in_channels, 4, 3, padding=1)
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def geometry(self, x: torch.Tensor) -> torch.Tensor:
        return activate_geometry(self.head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = self.impl if callable(self.impl) else BANDED_CONV_IMPLS[self.impl]
        return op(x, self.geometry(x), self.weight, self.bias, self.dilation)


# --------------------------------------------------------------------------------------------
# Sub-networks used inside the couplings.
# --------------------------------------------------------------------------------------------


def leaky_relu(x: torch.Tensor, training: bool) -> torch.Tensor:
    """The paper's LeakyReLU (slope 0.2), in place only while training, where it saves a buffer
    per layer: ONNX export decomposes every in-place call through symbolic shapes, which took a
    sixth of a `lite` export's time and wrote the same graph."""
    return F.leaky_relu(x, 0.2, inplace=training)


class DenseBlock(nn.Module):
    """Dense block (paper Fig. 2c): each 3x3 conv sees the block input and all earlier outputs."""

    def __init__(self, in_channels: int, out_channels: int, growth: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Conv2d(in_channels + i * growth, growth, 3, padding=1) for i in range(depth)
        )
        self.out = nn.Conv2d(in_channels + depth * growth, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(leaky_relu(layer(torch.cat(features, dim=1)), self.training))
        return self.out(torch.cat(features, dim=1))


class ResidualChannelAttention(nn.Module):
    """Residual channel attention from banded deformable convolutions (paper Fig. 2e).

    Two skip connections: one around the conv body, one around the attention-weighted result.
    """

    def __init__(self, channels: int, reduction: int, kernel: tuple[int, int], impl: str) -> None:
        super().__init__()
        self.conv1 = BandedDeformConv2d(channels, channels, kernel, impl=impl)
        self.conv2 = BandedDeformConv2d(channels, channels, kernel, impl=impl)
        hidden = max(channels // reduction, 4)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = x + self.conv2(leaky_relu(self.conv1(x), self.training))
        return x + body * self.attention(body)


# --------------------------------------------------------------------------------------------
# Invertible blocks.
# --------------------------------------------------------------------------------------------


class AffineCoupling(nn.Module):
    """Double-branch affine coupling (paper eq. 2), exactly invertible.

    y2 = x2 * exp(s(phi1(x1))) + psi1(x1);  y1 = x1 * exp(s(phi2(y2))) + psi2(y2),
    with the soft clamp s(v) = clamp * tanh(v / clamp) so exp() stays far from float16 overflow.
    (The paper's eq. 2 writes phi2(x2); only phi2(y2) matches its inverse, eq. 3.)
    """

    def __init__(self, c1: int, c2: int, make_subnet: Callable[[int, int], nn.Module], clamp: float) -> None:
        super().__init__()
        self.c1, self.c2, self.clamp = c1, c2, clamp
        self.phi1 = make_subnet(c1, c2)
        self.psi1 = make_subnet(c1, c2)
        self.phi2 = make_subnet(c2, c1)
        self.psi2 = make_subnet(c2, c1)

    def _log_scale(self, v: torch.Tensor) -> torch.Tensor:
        return self.clamp * torch.tanh(v / self.clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.c1, self.c2], dim=1)
        y2 = x2 * torch.exp(self._log_scale(self.phi1(x1))) + self.psi1(x1)
        y1 = x1 * torch.exp(self._log_scale(self.phi2(y2))) + self.psi2(y2)
        return torch.cat((y1, y2), dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = torch.split(y, [self.c1, self.c2], dim=1)
        x1 = (y1 - self.psi2(y2)) * torch.exp(-self._log_scale(self.phi2(y2)))
        x2 = (y2 - self.psi1(x1)) * torch.exp(-self._log_scale(self.phi1(x1)))
        return torch.cat((x1, x2), dim=1)


def dense_coupling(channels: int, growth: int, depth: int, clamp: float) -> AffineCoupling:
    """DCB (paper Fig. 2b/c): coupling whose four sub-networks are dense blocks."""
    half = channels // 2
    return AffineCoupling(half, channels - half, lambda ci, co: DenseBlock(ci, co, growth, depth), clamp)


def attentive_coupling(channels: int, config: BDINNConfig) -> AffineCoupling:
    """BDACB (paper Fig. 2d): sub-networks are a dense block then banded-deformable attention."""
    half = channels // 2

    def make(ci: int, co: int) -> nn.Module:
        return nn.Sequential(
            DenseBlock(ci, co, config.bottleneck_growth, config.dense_depth),
            ResidualChannelAttention(co, config.attention_reduction, config.kernel, config.banded_impl),
        )

    return AffineCoupling(half, channels - half, make, config.clamp)


class InvertibleSequence(nn.ModuleList):
    """Blocks applied in order; the inverse applies their inverses in reverse order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = block(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for block in reversed(self):
            y = block.inverse(y)
        return y


class PixelUnshuffle(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, 2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(y, 2)


class PixelShuffle(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(x, 2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(y, 2)


# --------------------------------------------------------------------------------------------
# The network.
# --------------------------------------------------------------------------------------------


@dataclass
class LevelWidths:
    """Channel counts at one encoder level."""

    encoder: int  # channels inside the EB (after unshuffle)
    skip: int  # channels sent down the short path
    onward: int  # channels passed to the next EB
    decoder: int = field(default=0)  # channels inside the DB (from below + skip)


def level_widths(config: BDINNConfig) -> list[LevelWidths]:
    widths = []
    incoming = 2 * config.channels
    for _ in range(3):
        enc = incoming * 4
        skip = round(enc * config.skip_fraction)
        if skip % 2 or skip <= 0 or skip >= enc:
            raise ValueError(f"skip_fraction {config.skip_fraction} gives an unusable split of {enc}")
        widths.append(LevelWidths(encoder=enc, skip=skip, onward=enc - skip))
        incoming = enc - skip
    below = widths[-1].onward
    for lw in reversed(widths):
        lw.decoder = below + lw.skip
        if lw.decoder % 4:
            raise ValueError(f"decoder width {lw.decoder} must be divisible by 4 for pixel shuffle")
        below = lw.decoder // 4
    if below != 2 * config.channels:
        raise ValueError("channel bookkeeping does not return to 2C at full resolution")
    return widths


class BDINN(nn.Module):
    """G: (Y, Y) -> (X, B) and its exact inverse; `forward` debands an image of any size."""

    multiple = 8  # three 2x (un)shuffles

    def __init__(self, config: BDINNConfig) -> None:
        super().__init__()
        self.config = config
        self.widths = level_widths(config)
        c = config
        self.encoders = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level, lw in enumerate(self.widths):
            g = c.growth[level]
            self.encoders.append(
                InvertibleSequence(
                    [PixelUnshuffle()]
                    + [
                        dense_coupling(lw.encoder, g, c.dense_depth, c.clamp)
                        for _ in range(c.encoder_blocks[level])
                    ]
                )
            )
            self.skips.append(
                InvertibleSequence(
                    [dense_coupling(lw.skip, g, c.dense_depth, c.clamp) for _ in range(c.skip_blocks[level])]
                )
            )
            self.decoders.append(
                InvertibleSequence(
                    [
                        dense_coupling(lw.decoder, g, c.dense_depth, c.clamp)
                        for _ in range(c.decoder_blocks[level])
                    ]
                    + [PixelShuffle()]
                )
            )
        self.bottleneck = InvertibleSequence(
            [attentive_coupling(self.widths[-1].onward, c) for _ in range(c.bottleneck_blocks)]
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier init (paper §4.1), except that the output conv of every sub-network starts at
        zero (as in Glow): every coupling is then the identity, and with the decoder order above
        the untrained network returns X = Y exactly, a residual-style start for debanding.
        Geometry heads stay zero (plain grids)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, DenseBlock):
                nn.init.zeros_(module.out.weight)
            elif isinstance(module, BandedDeformConv2d):
                nn.init.zeros_(module.head.weight)
                nn.init.zeros_(module.head.bias)

    # The invertible map on 2C channels, spatial size a multiple of 8.
    def set_banded_impl(self, impl: str | Callable[..., torch.Tensor]) -> None:
        """Switch every banded convolution's implementation: same maths, another speed or graph."""
        for module in self.modules():
            if isinstance(module, BandedDeformConv2d):
                module.impl = impl

    def decompose(self, y1: torch.Tensor, y2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G(Y1, Y2) -> (X, B). Inputs must have H and W divisible by 8."""
        self._check_multiple(y1)
        z = torch.cat((y1, y2), dim=1)
        skipped = []
        for enc, skip, lw in zip(self.encoders, self.skips, self.widths, strict=True):
            z = enc(z)
            s, z = torch.split(z, [lw.skip, lw.onward], dim=1)
            skipped.append(skip(s))
        z = self.bottleneck(z)
        for level in reversed(range(3)):
            # [skip, below] mirrors the encoder's [skip, onward] split, so with identity couplings
            # the permutations cancel and G starts close to X = Y.
            z = self.decoders[level](torch.cat((skipped[level], z), dim=1))
        c = self.config.channels
        return z[:, :c], z[:, c:]

    def reconstruct(self, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G^-1(X, B) -> (Y1, Y2), the exact inverse of `decompose`."""
        self._check_multiple(x)
        z = torch.cat((x, b), dim=1)
        skipped: list[torch.Tensor] = [torch.empty(0)] * 3
        for level in range(3):
            z = self.decoders[level].inverse(z)
            below = z.shape[1] - self.widths[level].skip
            skipped[level], z = torch.split(z, [self.widths[level].skip, below], dim=1)
        z = self.bottleneck.inverse(z)
        for level in reversed(range(3)):
            s = self.skips[level].inverse(skipped[level])
            z = self.encoders[level].inverse(torch.cat((s, z), dim=1))
        c = self.config.channels
        return z[:, :c], z[:, c:]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Deband y [N,C,H,W] (values in [0, 1]) of any size, with the coarse pass if configured."""
        return self._with_coarse_pass(y) if self.config.coarse_pass else self._deband(y)

    def _deband(self, y: torch.Tensor) -> torch.Tensor:
        """One pass of the network: pad to a multiple of 8, crop back."""
        h, w = y.shape[-2:]
        padded = pad_to_multiple(y, self.multiple)
        x, _ = self.decompose(padded, padded)
        return x[..., :h, :w]

    def _with_coarse_pass(self, y: torch.Tensor) -> torch.Tensor:
        """The network's output with its low frequencies replaced, where the input is flat, by those
        of the network run on the half-size frame. A band wider than the network reaches (its
        smooth regions' bands run to 60-280 px) is half as wide there, so the ramp inside it is
        rebuilt; texture and edges keep the full-size pass (the gate is zero near them). Padded to
        a multiple of 16 first, so that both passes need no padding of their own."""
        h, w = y.shape[-2:]
        padded = pad_to_multiple(y, 2 * self.multiple)
        out, _ = self.decompose(padded, padded)
        small = F.avg_pool2d(padded, 2)
        half, _ = self.decompose(small, small)
        correction = upsample2_bicubic(half - F.avg_pool2d(out, 2))
        return (out + flat_gate(padded) * correction)[..., :h, :w]

    def _check_multiple(self, t: torch.Tensor) -> None:
        h, w = t.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"decompose/reconstruct need H and W divisible by 8, got {h}x{w}")


# The coarse pass's gate: input luma spread within FLAT_WINDOW x FLAT_WINDOW at most FLAT_LEVELS
# 8-bit levels, feathered by a Gaussian of FLAT_FEATHER px. Chosen on training pictures. The
# spread is compared with half a level more: an exact 2-level step sits on the threshold, where
# float32, float16 and each backend's rounding would decide differently.
FLAT_WINDOW, FLAT_LEVELS, FLAT_FEATHER = 9, 2.0, 4.0


def flat_gate(y: torch.Tensor) -> torch.Tensor:
    """[N,1,H,W] in [0, 1]: 1 where the picture is flat around a pixel, 0 near texture and edges."""
    red, green, blue = (float(weight) for weight in BT709_LUMA)  # scalars: no host-to-device copy
    luma = red * y[:, 0:1] + green * y[:, 1:2] + blue * y[:, 2:3]
    pad = FLAT_WINDOW // 2
    spread = F.max_pool2d(luma, FLAT_WINDOW, 1, pad) + F.max_pool2d(-luma, FLAT_WINDOW, 1, pad)
    flat = (spread <= (FLAT_LEVELS + 0.5) / 255).to(y.dtype)
    radius = int(4 * FLAT_FEATHER)
    taps = torch.arange(-radius, radius + 1, device=y.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / FLAT_FEATHER) ** 2)
    kernel = (kernel / kernel.sum()).to(y.dtype)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))


def _keys_cubic(distance: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution kernel at |distance| (a = -0.75, as F.interpolate's bicubic)."""
    t = distance.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def upsample2_bicubic(x: torch.Tensor) -> torch.Tensor:
    """F.interpolate(x, scale_factor=2, mode="bicubic") as a convolution and a pixel shuffle:
    TensorRT-RTX's builder fails on a cubic Resize of a dynamic shape, and these two it builds.
    With half-pixel centres an output pixel sits a quarter pixel before (even) or after (odd)
    its source pixel i, so each phase is a fixed filter over the taps i-2 .. i+2; the weights are
    computed on the device (no host copy, so a CUDA graph can capture it)."""
    taps = torch.arange(-2, 3, device=x.device, dtype=torch.float32)
    phases = torch.stack((_keys_cubic(taps + 0.25), _keys_cubic(taps - 0.25)))  # even, odd
    kernels = (phases[:, None, :, None] * phases[None, :, None, :]).reshape(4, 1, 5, 5)  # (row, col)
    channels = x.shape[1]
    weight = kernels.repeat(channels, 1, 1, 1).to(x.dtype)
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")  # F.interpolate clamps at the borders
    return F.pixel_shuffle(F.conv2d(padded, weight, groups=channels), 2)


def pad_to_multiple(y: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple; reflect where the image is large enough, else replicate.

    Always pads, even by zero: a branch on the size would be frozen into an exported graph
    (the ONNX exporter specialises `if pad == 0` to the traced size and drops the Pad).
    """
    h, w = y.shape[-2:]
    mode = "reflect" if h >= multiple and w >= multiple else "replicate"  # reflect needs pad < side
    return F.pad(y, (0, (-w) % multiple, 0, (-h) % multiple), mode=mode)


def build_model(config: BDINNConfig | str) -> BDINN:
    return BDINN(get_config(config) if isinstance(config, str) else config)


def with_coarse_pass(model: BDINN) -> BDINN:
    """A copy of `model` with the coarse pass on: the same weights (the pass adds none), device,
    mode and banded-convolution implementation."""
    if model.config.coarse_pass:
        return model
    on = copy.deepcopy(model)
    on.config = replace(model.config, coarse_pass=True)
    return on


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
