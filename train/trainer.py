"""The training loop: Adam, cosine schedule, gradient clipping, validation, exact resume, DDP.

Everything random about the data order is a pure function of (seed, epoch), and augmentation of
(seed, patch index, epoch), so a run stopped after step k and resumed replays the same batches
as an uninterrupted run. Under torchrun every rank takes an equal slice of each global batch;
DDP's gradient averaging then gives the same update as one process with the whole batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..runtime.backends.torch_backend import torch_memory_errors
from ..runtime.cambi import cambi
from ..runtime.debander import DEFAULT_MAX_CHANGE, limit_change_tensor
from ..runtime.imageio import from_float
from ..runtime.metrics import PSNR_CAP, capped_psnr, psnr_of_mse, ssim
from ..runtime.stop_signals import signals_deferred
from .checkpoint import (
    MAX_RECORD_BYTES,
    STATE_FORMAT,
    checkpoint_sidecar,
    load_checkpoint,
    readable,
    save_checkpoint,
    write_json,
    write_tensors,
)
from .data import FullImageDataset, PatchDataset
from .losses import debanding_loss
from .network import BDINN, BDINNConfig
from .provenance import checkpoint_record, hardware, training_record

# A raw output this far below its own input's PSNR is a network training broke (a learning rate
# too high): the served output hides it, since the change limit keeps it near the input. Early
# training stays within a few dB of the input.
DIVERGED_DB = 10.0
SEED_MAX = 2**32 - 1  # numpy takes no negative seed; seed x 1,000,003 + epoch is a torch seed (< 2**64)
# Settings that define the run: resuming with different values would not continue the same run.
RUN_DEFINING = (
    "config", "steps", "batch_size", "lr", "min_lr", "warmup", "fft_weight", "grad_clip", "seed",
    "train_seed", "data", "sources",
    "pixels",  # what the pictures hold: one edited since (same names) is other data
    "val_every",  # the steps best is chosen from
    "max_val_images",  # the validation set too: best is chosen by comparing its scores
    "val_sample",  # and the pictures it scores, which a change of their order would change
)  # fmt: skip


NO_PICTURE = "no training picture could be read (each is named above); check the --clean or --pairs folders"


class TrainingError(RuntimeError):
    """Training cannot go on; the message is one line for the user."""


@dataclass
class TrainSettings:
    config: dict[str, Any]  # BDINNConfig as a dict
    config_name: str | None = None
    steps: int = 20000
    batch_size: int = 4
    lr: float = 2e-4
    min_lr: float = 1e-6
    warmup: int = 500  # linear LR warm-up steps
    fft_weight: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    val_every: int = 500
    max_val_images: int | None = None
    seed: int = 0
    train_seed: int | None = None  # of the training alone (None: seed), to repeat a run on the same data
    amp: bool = False  # bfloat16 autocast on CUDA
    device: str = "auto"
    init: str | None = None  # checkpoint whose weights a new run starts from (fine-tuning)
    keep_checkpoints: bool = False  # also keep step-NNNNNNN.safetensors at every validation
    data: dict[str, Any] = field(default_factory=dict)  # how patches are cut (size, stride, shares)
    sources: str | None = None  # fingerprint of the training and validation pictures (pairs_fingerprint)
    pixels: str | None = None  # digest of the pixels of the pairs trained and validated on (pixels_digest)
    val_sample: str | None = None  # fingerprint of the pairs validation scores (sample_fingerprint)
    data_origin: dict[str, Any] = field(default_factory=dict)  # folders and degradations (provenance.py)

    @property
    def training_seed(self) -> int:
        """Seeds the initial weights, the patch order, augmentation and shares; `seed` alone also
        draws the pairs and the split, so a second training seed on the same data needs its own."""
        return self.seed if self.train_seed is None else self.train_seed


def sample_fingerprint(sample: Sequence[Any]) -> str:
    """Which pairs validation scores, by name: best is chosen by comparing their scores."""
    return hashlib.sha256("\n".join(sorted(p.name for p in sample)).encode()).hexdigest()[:16]


def pairs_fingerprint(train: Sequence[Any], val: Sequence[Any]) -> str:
    """Which pictures a run trains and validates on, by name: resuming on other data is another run."""
    names = sorted(f"train:{p.name}" for p in train) + sorted(f"val:{p.name}" for p in val)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def check_before_data(settings: TrainSettings, out_dir: Path, resume: bool) -> None:
    """What can be refused before the data is prepared (minutes of encoding on real wallpapers):
    the device, bfloat16 off CUDA, a batch the processes cannot share, and a resume of a run with
    other settings or no state."""
    ranks = Distributed.from_env()
    device = resolve_device(settings.device, ranks.local_rank)
    _check_batch_split(settings.batch_size, ranks.world)
    if settings.amp and device.type != "cuda":
        raise TrainingError("--amp (bfloat16 autocast) needs a CUDA device; drop it on the CPU")
    if resume:
        _resumable_meta(Path(out_dir) / "state.json", settings)


def _check_batch_split(batch_size: int, world: int) -> None:
    if batch_size % world:
        raise TrainingError(f"--batch-size {batch_size} must be a multiple of the process count ({world})")


def _same_file(path: str, other: str | None) -> bool:
    """Whether two spellings (relative, absolute, through links) name one file."""
    return other is not None and (path == other or Path(path).resolve() == Path(other).resolve())


class DamagedState(TrainingError):
    """A training state that is not one, or not whole; its caller says what to do about it."""


def read_state(meta_path: Path) -> dict[str, Any]:
    """A training state's JSON (OUT/state.json), with every field a resume reads of its kind: the
    one reader for the trainer, bdinn-train's option defaults and validation_split.py."""
    try:
        if meta_path.stat().st_size > MAX_RECORD_BYTES:
            raise DamagedState(
                f"{meta_path}: over {MAX_RECORD_BYTES >> 20} MB, not a state bdinn-train writes"
            )
        meta = json.loads(meta_path.read_text())
    except OSError as exc:
        raise TrainingError(f"{meta_path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # JSON or UTF-8 errors; nesting thousands deep
        raise DamagedState(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT or "settings" not in meta:
        raise DamagedState(f"{meta_path}: not a bdinn training state")
    damaged = _damaged_fields(meta)
    if damaged:  # edited by hand, or written by something else: KeyError and AttributeError tracebacks
        raise DamagedState(
            f"{meta_path}: a damaged training state ({', '.join(damaged)} missing or of the wrong kind)"
        )
    return meta


def _resumable_meta(meta_path: Path, settings: TrainSettings) -> dict[str, Any]:
    """A saved state's JSON, checked against this run's settings (those not yet known are skipped)."""
    if not meta_path.parent.is_dir():  # nothing to start over from either: --force would mislead
        raise TrainingError(f"{meta_path.parent}: no such folder, so no run to resume; leave out --resume")
    if not meta_path.is_file() or not meta_path.with_suffix(".safetensors").is_file():
        if not any(meta_path.parent.glob("*.safetensors")):  # stopped while its pairs were made
            raise TrainingError(
                f"{meta_path.parent}: no training state to resume, the run stopped before its first step; "
                "leave out --resume to start it (the pairs made so far are used)"
            )
        raise TrainingError(
            f"{meta_path.parent}: no training state to resume (state.safetensors/.json); --force starts over"
        )
    try:
        meta = read_state(meta_path)
    except DamagedState as exc:
        raise TrainingError(f"{exc}; start over with --force, or --init last.safetensors") from None
    saved = meta["settings"]
    current = json.loads(json.dumps(asdict(settings)))  # tuples -> lists, as saved
    if isinstance(saved.get("data"), dict):  # a data setting that does not apply (None) matches any
        current["data"] = {k: saved["data"].get(k) if v is None else v for k, v in current["data"].items()}
    unknown = {k for k in ("sources", "pixels", "val_sample") if not current[k]}  # known once the data is
    changed = [k for k in RUN_DEFINING if k not in unknown and saved.get(k, current[k]) != current[k]]
    if "sources" in changed and "pixels" in changed:  # other pictures hold other pixels: no edit to blame
        changed.remove("pixels")
    if changed:  # a key absent from the saved state predates it
        was = ", ".join(
            _as_option(k, saved.get(k)) if k != "data" else _changed_data(saved["data"], current["data"])
            for k in changed
            if k not in ("config", "sources", "pixels", "val_sample")
        )
        named = {
            "sources": "pictures",
            "pixels": "picture content (one edited since the run started, its pairs made again)",
            "val_sample": "validation pictures",
        }
        what = ", ".join(named.get(k, k) for k in changed)
        raise TrainingError(
            f"{meta_path}: cannot resume with different {what}"
            + (f" (saved run used {was})" if was else "")
            + (" (the architecture differs)" if "config" in changed else "")
        )
    if settings.init is not None and not _same_file(settings.init, saved.get("init")):  # weights: the state's
        started = f"from {saved['init']}" if saved.get("init") else "from scratch"
        raise TrainingError(f"{meta_path}: this run started {started}; resume it without --init")
    return meta


def _damaged_fields(meta: dict[str, Any]) -> list[str]:
    """The fields of a saved state's JSON that a resume reads and that are missing or of the
    wrong kind."""
    kinds = {"settings": dict, "step": int, "param_groups": list, "best_psnr": (int, float, type(None))}
    damaged = [name for name, kind in kinds.items() if name not in meta or not isinstance(meta[name], kind)]
    if isinstance(meta.get("settings"), dict) and not isinstance(meta["settings"].get("data", {}), dict):
        damaged.append("settings.data")
    groups = meta.get("param_groups")
    if isinstance(groups, list) and not all(
        isinstance(group, dict) and isinstance(group.get("betas", ()), list | tuple) for group in groups
    ):
        damaged.append("param_groups")
    optional = {"seconds": (int, float), "init_record": dict, "step_metrics": dict}
    damaged += [
        name
        for name, kind in optional.items()
        if meta.get(name) is not None and not isinstance(meta[name], kind)
    ]
    return damaged


def _changed_data(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """The saved run's patch settings that differ, as their options: --patch-size 128, not a dict."""
    differ = [key for key in sorted(current) if saved.get(key) != current[key]]
    return ", ".join(_as_option(key, saved.get(key)) for key in differ)


def _as_option(key: str, value: Any) -> str:
    """A data setting as its command-line option: --patch-size 128, --no-augment, no --max-val-images."""
    name = key.replace("_", "-")
    if value is None:  # not given: "--max-val-images None" cannot be typed
        return f"no --{name}"
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"--{name} {value}"


def cosine_lr(step: int, total: int, base: float, floor: float, warmup: int = 0) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay from base to floor at the last step.

    The warm-up matters for an INN that starts as the identity: Adam's first updates move every
    zero-initialised output conv by about lr at once, and the couplings compound that.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup - 1, 1), 1.0)
    return floor + 0.5 * (base - floor) * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        """torchrun sets WORLD_SIZE / RANK / LOCAL_RANK; a plain run has none of them (or empty)."""
        values = {}
        for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
            text = os.environ.get(name, "").strip()
            try:
                values[name] = int(text) if text else default
            except ValueError:
                raise TrainingError(
                    f"{name}={text!r} is not a whole number (torchrun sets it; unset it for a plain run)"
                ) from None
        rank, world, local_rank = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
        if not 0 <= rank < world or local_rank < 0:  # a stray RANK=1 made the only process not the main
            raise TrainingError(
                f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}: each process's RANK is from 0 "
                "to WORLD_SIZE - 1 (torchrun sets them; unset them for a plain run)"
            )
        return cls(rank=rank, world=world, local_rank=local_rank)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda: no CUDA device is available (use --device cpu or auto)")
        return torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise TrainingError(f"--device {name}: expected auto, cpu or cuda")


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The patch order of one epoch, a pure function of (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def _as_uint8(image: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] in [0, 1] -> the H x W x 3 8-bit picture a user would save (as bdinn-run rounds)."""
    return from_float(image[0].permute(1, 2, 0).float().cpu().numpy(), 8)


class Trainer:
    """One training run writing into out_dir: last/best checkpoints and a resumable state."""

    def __init__(
        self,
        settings: TrainSettings,
        train_set: PatchDataset,
        val_set: FullImageDataset | None,
        out_dir: Path,
        resume: bool = False,
    ) -> None:
        self.settings = settings
        self.train_set = train_set
        self.val_set = val_set
        self.out_dir = Path(out_dir)
        self.dist = Distributed.from_env()
        s = settings
        _check_batch_split(s.batch_size, self.dist.world)
        self.batches_per_epoch = len(train_set) // s.batch_size
        if self.batches_per_epoch == 0 and getattr(train_set, "pairs", None) == []:
            raise TrainingError(NO_PICTURE)
        if self.batches_per_epoch == 0 and getattr(train_set, "patches_total", None) == 0:
            raise TrainingError(
                f"no training picture is as large as a patch ({train_set.patch_size} px): lower --patch-size "
                "or add larger pictures"
            )
        if self.batches_per_epoch == 0 and getattr(train_set, "patches_banded", None) == 0:
            raise TrainingError(
                f"none of the {train_set.patches_total} training patches shows banding: the pictures need "
                "smooth areas (skies, gradients), and --pairs a banded folder, then its clean one, not a copy"
            )
        if self.batches_per_epoch == 0:
            raise TrainingError(
                f"only {len(train_set)} training patches, fewer than one batch of "
                f"{s.batch_size}: add images or lower --batch-size / --patch-size"
            )
        self.device = resolve_device(s.device, self.dist.local_rank)
        if s.amp and self.device.type != "cuda":
            raise TrainingError("--amp (bfloat16 autocast) needs a CUDA device; drop it on the CPU")
        if self.dist.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        torch.manual_seed(s.training_seed)
        self.model = BDINN(BDINNConfig.from_dict(s.config)).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        self.step = 0
        self.step_metrics: dict[str, float] = {}  # the last step's loss and batch PSNR
        self._saved_step = -1  # the step of the training state on disk
        self.best_psnr = -math.inf
        self.clean_cambi: float | None = None  # of the validation targets, scored at the first validation
        self.validating = False  # what ran out of memory: a step's patches, or whole pictures
        self.input_psnrs: list[float] | None = None  # of each banded validation input itself, likewise
        self.init: dict[str, Any] | None = None  # the checkpoint fine-tuned, as its sidecar records it
        # of training and validation before this process's run; None: a resumed state predates the count
        self.seconds: float | None = 0.0
        self._run_started = time.perf_counter()
        self.earlier_parts: list[dict[str, Any]] = []  # what the run ran on before this resume
        if resume:
            self._load_state()
        elif s.init is not None:
            self._load_init_weights(Path(s.init))
            self.init = checkpoint_record(Path(s.init))
        self._part_start = self.step
        self.net: torch.nn.Module = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    # ---------------------------------------------------------------- state on disk
    @property
    def state_path(self) -> Path:
        return self.out_dir / "state.safetensors"

    def _save_state(self) -> None:
        opt = self.optimizer.state_dict()
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for index, entry in opt["state"].items():
            for key, value in entry.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
        groups = [
            {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in opt["param_groups"]
        ]
        self._saved_step = self.step
        write_tensors(self.state_path, tensors, metadata={"format": STATE_FORMAT, "step": str(self.step)})
        write_json(
            self.state_path.with_suffix(".json"),
            {
                "format": STATE_FORMAT,
                "step": self.step,
                "best_psnr": self.best_psnr if math.isfinite(self.best_psnr) else None,
                "step_metrics": self.step_metrics,
                "settings": asdict(self.settings),
                "param_groups": groups,
                "init_record": self.init,
                "seconds": self._elapsed(),
                "hardware_parts": self._parts(hardware(self.device, self.dist.world)),
            },
        )

    def _load_state(self) -> None:
        meta_path = self.state_path.with_suffix(".json")
        meta = _resumable_meta(meta_path, self.settings)
        try:
            with safe_open(readable(self.state_path), "pt") as handle:
                saved_step = (handle.metadata() or {}).get("step")
            tensors = load_file(str(self.state_path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise TrainingError(f"{self.state_path}: unreadable ({exc}); start over with --force") from None
        if saved_step is not None and saved_step != str(meta.get("step")):
            raise TrainingError(
                f"{self.state_path}: holds step {saved_step} but {meta_path.name} step {meta.get('step')} "
                "(the run stopped while saving); start over with --force, or --init last.safetensors"
            )
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        except RuntimeError:
            raise TrainingError(
                f"{self.state_path}: its weights do not fit this run's network; start over with --force"
            ) from None
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = (*key.split(".", 2), "")[:3]
                if not index.isdigit() or not name:
                    raise TrainingError(
                        f"{self.state_path}: a tensor {key!r} no bdinn run saves; start over with --force"
                    )
                state.setdefault(int(index), {})[name] = value.to(self.device)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for index, entries in state.items():  # Adam's moments have their parameter's shape
            moments = [v for k, v in entries.items() if k in ("exp_avg", "exp_avg_sq")]
            if index >= len(params) or any(v.shape != params[index].shape for v in moments):
                raise TrainingError(
                    f"{self.state_path}: its optimiser state does not fit this run's network (tensor "
                    f"optimizer.{index}); start over with --force, or --init last.safetensors"
                )
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
        try:
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (KeyError, ValueError, TypeError) as exc:  # groups edited, or of another optimiser
            raise TrainingError(
                f"{meta_path}: its optimiser state does not fit this run ({exc}); start over with --force, "
                "or --init last.safetensors"
            ) from None
        self.step = self._saved_step = int(meta["step"])
        self.settings.init = meta["settings"].get("init")  # where the weights came from stays on record
        # and where the pictures came from: the same ones (checked), wherever a copied cache now is
        self.settings.data_origin = meta["settings"].get("data_origin") or self.settings.data_origin
        self.init = meta.get("init_record")
        if self.init is None and self.settings.init is not None:  # a state saved before the record
            self.init = checkpoint_record(Path(self.settings.init))
        self.seconds = float(meta["seconds"]) if meta.get("seconds") is not None else None
        unknown = [{"steps": [0, self.step]}] if self.step else []  # saved before parts were recorded
        self.earlier_parts = list(meta.get("hardware_parts") or unknown)
        self.best_psnr = meta["best_psnr"] if meta["best_psnr"] is not None else -math.inf
        self.step_metrics = meta.get("step_metrics") or {}

    def _load_init_weights(self, path: Path) -> None:
        """Fine-tuning: the weights of a finished run, with a fresh optimiser and schedule. The
        coarse pass adds no weights, so a run may turn it on (or off) for the weights it starts
        from."""
        source, _ = load_checkpoint(path)
        if not self.model.config.same_weights(source.config):
            raise TrainingError(
                f"{path}: its architecture differs from this run's config (drop --config to use its own)"
            )
        self.model.load_state_dict(source.state_dict())

    # ---------------------------------------------------------------- loop
    def _batch(self, step: int, cache: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position = divmod(step, self.batches_per_epoch)
        if cache.get("epoch") != epoch:
            cache["epoch"] = epoch
            cache["order"] = epoch_order(len(self.train_set), self.settings.training_seed, epoch)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(epoch)
        b = self.settings.batch_size
        indices = cache["order"][position * b : (position + 1) * b][self.dist.rank :: self.dist.world]
        pairs = [self.train_set[int(i)] for i in indices]
        banded = torch.stack([p[0] for p in pairs]).to(self.device)
        clean = torch.stack([p[1] for p in pairs]).to(self.device)
        return banded, clean

    def train_step(self, banded: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
        """One optimiser step on a batch: (loss, batch PSNR). Public so benchmarks time this one."""
        s = self.settings
        self.net.train()
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=s.amp and self.device.type == "cuda"
        ):
            pred = self.net(banded)
        loss = debanding_loss(pred, clean, s.fft_weight)
        mse = ((pred.detach().float() - clean) ** 2).mean()
        report = torch.stack((loss.detach(), mse))
        if self.dist.world > 1:
            dist.all_reduce(report)
            report /= self.dist.world
        loss_value, mse_value = (float(v) for v in report)
        if not (math.isfinite(loss_value) and math.isfinite(mse_value)):  # squares overflow first
            raise self._non_finite(f"non-finite loss at step {self.step}")
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(self.step, s.steps, s.lr, s.min_lr, s.warmup)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
        self.optimizer.step()
        return loss_value, psnr_of_mse(max(mse_value, 1e-12))

    def _weights_finite(self) -> bool:
        """One answer for all the weights: one device sync, not one per tensor."""
        return bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all())

    def _non_finite(self, what: str) -> TrainingError:
        """The stop for a run gone non-finite, saying which checkpoint is still good."""
        if (self.out_dir / "best.safetensors").exists():
            kept = f"{self.out_dir / 'best.safetensors'} is the best network validated so far"
        elif (self.out_dir / "last.safetensors").exists():  # it may be diverging already
            kept = f"{self.out_dir / 'last.safetensors'} is the last saved, not validated as good"
        else:
            kept = "no checkpoint was written yet"
        return TrainingError(f"{what}: stopped; {kept} (lower --lr or --grad-clip, or check the data)")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR, SSIM and CAMBI of full validation images, served as `bdinn-run` serves them.

        That is the runtime's default change limit and 8-bit output, so the best checkpoint is
        the best one users get; `val_psnr_raw` scores the network's unlimited output beside it.
        PSNR alone picks checkpoints that leave 1-code steps in smooth gradients, and fine-tunes
        move CAMBI by 2 while PSNR moves by 0.05 dB; so the banding score of the outputs is
        reported beside that of the clean targets (`val_cambi_clean`), the bar a model must meet.
        """
        if not self.val_set:
            return {}
        self.model.eval()
        count = len(self.val_set) if self.settings.max_val_images is None else self.settings.max_val_images
        scores: list[tuple[float, float, float, float]] = []
        clean_cambis: list[float] = []  # scored once, as 8-bit pictures like the outputs
        input_psnrs: list[float] = []
        for index in range(min(count, len(self.val_set))):
            _, banded, clean = self.val_set[index]
            banded = banded.unsqueeze(0).to(self.device)
            raw = self.model(banded).clamp(0, 1)
            served8 = _as_uint8(limit_change_tensor(banded, raw, DEFAULT_MAX_CHANGE))
            served = served8.astype(np.float32) / 255
            target = clean.permute(1, 2, 0).numpy()
            # capped: a picture served exactly as its target (a flat one) made the mean inf, and no
            # later step could ever be better than that
            raw_psnr = capped_psnr(_as_uint8(raw).astype(np.float32) / 255, target)
            scores.append((capped_psnr(served, target), ssim(served, target), cambi(served8), raw_psnr))
            if self.clean_cambi is None:
                clean_cambis.append(cambi(np.round(target * 255).astype(np.uint8)))
                input_psnrs.append(capped_psnr(_as_uint8(banded).astype(np.float32) / 255, target))
        if self.clean_cambi is None:
            self.clean_cambi, self.input_psnrs = float(np.mean(clean_cambis)), input_psnrs
        psnrs, ssims, cambis, raw_psnrs = zip(*scores, strict=True)
        # over the pictures whose input is not already its target (scored at the cap)
        banded = [
            (raw, given) for raw, given in zip(raw_psnrs, self.input_psnrs, strict=True) if given < PSNR_CAP
        ]
        return {
            "val_psnr": float(np.mean(psnrs)),
            "val_ssim": float(np.mean(ssims)),
            "val_cambi": float(np.mean(cambis)),
            "val_cambi_clean": self.clean_cambi,
            "val_psnr_raw": float(np.mean(raw_psnrs)),
            "val_psnr_input": float(np.mean([given for _, given in banded])) if banded else None,
            "val_gain_raw": float(np.mean([raw - given for raw, given in banded])) if banded else None,
        }

    def _checkpoint(self, metrics: dict[str, float]) -> dict[str, float]:
        """Validate, then write last (best, kept) checkpoints and the training state: main rank only.

        Best is by validation PSNR, never a network that training broke (_diverged); with
        keep_checkpoints every validated step stays on disk too, for choosing by the banding score
        as well (it moved by 3 across one fine-tune's steps).
        """
        if self.dist.main:
            metrics = {**metrics, **self.validate()}
            better = metrics.get("val_psnr", -math.inf) > self.best_psnr and not _diverged(metrics)
            names = ["best"] if better else []
            where = hardware(self.device, self.dist.world)
            record = training_record(self.settings, init=self.init, where=where, seconds=self._elapsed())
            if len(parts := self._parts(where)) > 1:  # resumed on other hardware: each part's
                record["hardware_parts"] = parts
            if self.settings.keep_checkpoints:
                names.append(f"step-{self.step:07d}")
            # weights and sidecars, `last` last (a resume redoes the step unless it is there), the
            # best score only once they are all written, then the state: all or none of a step's
            with signals_deferred():
                for name in [*names, "last"]:
                    save_checkpoint(
                        self.out_dir / f"{name}.safetensors",
                        self.model,
                        config_name=self.settings.config_name,
                        step=self.step,
                        metrics=metrics,
                        extra={"training": record},
                    )
                if better:
                    self.best_psnr = metrics["val_psnr"]
                self._save_state()
        if self.dist.world > 1:
            dist.barrier()
        return metrics

    def _parts(self, where: dict[str, Any]) -> list[dict[str, Any]]:
        """The steps each part of the run (a start and its resumes) took and what it ran on; parts on
        the same hardware are one (a run started on a CPU and resumed by torchrun on GPUs recorded
        the GPUs alone)."""
        parts = [dict(part) for part in self.earlier_parts]
        if parts and {k: v for k, v in parts[-1].items() if k != "steps"} == where:
            parts[-1]["steps"] = [parts[-1]["steps"][0], self.step]
        else:
            parts.append({"steps": [self._part_start, self.step], **where})
        return parts

    def _elapsed(self) -> float | None:
        """Wall seconds of this run so far, over every resume; None where an earlier part is unknown."""
        return None if self.seconds is None else self.seconds + time.perf_counter() - self._run_started

    def run(self, stop_at: int | None = None) -> dict[str, float]:
        """Train up to settings.steps (or stop_at); returns the last metrics.

        Stopping early, at stop_at or by Ctrl-C/SIGTERM/SIGHUP, saves the training state at the last
        whole step (a signal waits for the step to finish) and nothing else, so that a resumed run
        validates, checkpoints and picks its best exactly as an uninterrupted one; unless an update
        left non-finite weights, whose state would replace the last good one (TrainingError at
        stop_at, a line on a signal)."""
        s = self.settings
        end = s.steps if stop_at is None else min(stop_at, s.steps)
        cache: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        # On a terminal only: in a log (nohup, a scheduler) every redraw is a line of its own.
        drawn = self.dist.main and sys.stderr is not None and sys.stderr.isatty()
        bar = tqdm(total=end, initial=self.step, disable=not drawn, desc="train", unit="step")
        started, images = time.perf_counter(), 0
        try:
            with torch_memory_errors():  # a step or a validation too large for the device
                if self._from_main_rank(self._checkpoint_missing()):  # a resumed run stopped before it
                    metrics = self._validate_and_checkpoint(bar)
                while self.step < end:
                    with signals_deferred():
                        banded, clean = self._batch(self.step, cache)
                        loss, batch_psnr = self.train_step(banded, clean)
                        self.step += 1
                        self.step_metrics = {"loss": loss, "train_psnr": batch_psnr}
                    images += s.batch_size
                    rate = images / max(time.perf_counter() - started, 1e-9)
                    metrics = self.step_metrics
                    bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{batch_psnr:.2f}", img_s=f"{rate:.1f}")
                    bar.update(1)
                    if self._checkpoint_due():
                        metrics = self._validate_and_checkpoint(bar)
        except (KeyboardInterrupt, SystemExit):
            self._save_early(bar, "interrupted")
            raise
        except MemoryError:
            self._save_early(bar, "out of memory")
            raise
        finally:
            bar.close()
        if not self._weights_finite():  # broken after the last checkpoint: not a run stopped as asked
            raise self._non_finite(f"non-finite weights after step {self.step}")
        self._save_early(bar, "stopped")
        return metrics

    def _checkpoint_due(self) -> bool:
        s = self.settings
        return self.step > 0 and (self.step % s.val_every == 0 or self.step == s.steps)

    def _checkpoint_missing(self) -> bool:
        """Whether this step is due a validation and checkpoint that is not on disk: a run stopped
        (Ctrl-C, a failed validation) between the step and its checkpoint, which `last` tells."""
        if not self._checkpoint_due():
            return False
        try:
            last = json.loads(checkpoint_sidecar(self.out_dir / "last.safetensors").read_text())
            return last.get("step") != self.step
        except (OSError, ValueError, AttributeError):
            return True

    def _from_main_rank(self, flag: bool) -> bool:
        """The main rank's `flag`, for every rank to follow (they meet in _checkpoint)."""
        if self.dist.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(value, 0)
        return bool(value.item())

    def _validate_and_checkpoint(self, bar: tqdm) -> dict[str, float]:
        """This step's validation and checkpoints. Should they fail (a picture validation cannot
        score, a full disk), the training state is kept first, so --resume can try them again."""
        # a finite loss before an update that broke the weights: neither checkpoints nor the state
        # are written over (every rank holds the same weights, so all stop together)
        if not self._weights_finite():
            raise self._non_finite(f"non-finite weights after step {self.step}")
        try:
            self.validating = True
            metrics = self._checkpoint(self.step_metrics)
            self.validating = False  # kept True past a failure: it says what failed
        except Exception:
            with contextlib.suppress(Exception):
                self._save_early(bar, "failed")
            raise
        if "val_psnr" in metrics:
            m = metrics
            bar.write(
                f"step {self.step}: val PSNR {m['val_psnr']:.2f} dB, SSIM {m['val_ssim']:.4f}, "
                f"CAMBI {m['val_cambi']:.2f} (clean {m['val_cambi_clean']:.2f}), "
                f"raw network {m['val_psnr_raw']:.2f} dB"
            )
            if _diverged(m):
                bar.write(
                    f"step {self.step}: the raw network scores {-m['val_gain_raw']:.1f} dB below its own "
                    f"input ({m['val_psnr_input']:.2f} dB): training has broken it (lower --lr); not kept as "
                    "best"
                )
        return metrics

    def _save_early(self, bar: tqdm, how: str) -> None:
        """The training state at a step that has none on disk yet (main rank), to resume from; not
        one of weights an update broke, which would take the last good state's place."""
        if not self.dist.main or self.step == 0:
            return
        if not self._weights_finite():
            kept = f"the one of step {self._saved_step} is kept" if self._saved_step > 0 else "none was saved"
            bar.write(f"{how} at step {self.step}: an update left non-finite weights, so no training state "
                      f"was saved ({kept}; lower --lr or --grad-clip)")  # fmt: skip
            return
        if self.step != self._saved_step:
            with signals_deferred():
                self._save_state()
            said = "training state saved"
        elif how == "interrupted":
            said = "its training state was saved before"
        else:
            return
        missing = self._checkpoint_missing()
        if self.step >= self.settings.steps and not missing:  # nothing left for a resume to do
            bar.write(f"{how} at step {self.step}: the run had finished; its checkpoints are saved")
            return
        then = " (validating and checkpointing this step first)" if missing else ""
        bar.write(f"{how} at step {self.step}: {said}; --resume continues from there{then}")


def _diverged(metrics: dict[str, float | None]) -> bool:
    """Whether validation found the raw network DIVERGED_DB or more below its own input."""
    gain = metrics.get("val_gain_raw")
    return gain is not None and gain < -DIVERGED_DB
