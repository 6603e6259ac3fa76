"""Blend two fine-tunes of one model: weights (1 - t) * A + t * B, written as a new checkpoint.

    python scripts/interpolate_checkpoints.py A.safetensors B.safetensors --t 0.2 -o soup.safetensors

Two fine-tunes that start from the same weights stay in one basin, so the straight line between
them is a family of working models (Wortsman et al., "Model soups", ICML 2022). Here it trades
what one fine-tune keeps (grain, detail: higher PSNR) against what the other removes (steps:
lower CAMBI) without another training run; choose t with bdinn-eval.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from bdinn.runtime.cli_options import BdinnCommand, FiniteFloatRange, stops_cleanly
from bdinn.runtime.files import OutputError
from bdinn.train.checkpoint import CheckpointError, checkpoint_sidecar, load_checkpoint, save_checkpoint
from bdinn.train.provenance import checkpoint_record

WEIGHTS = click.Path(exists=True, dir_okay=False, path_type=Path)


def interpolate(a: torch.nn.Module, b: torch.nn.Module, t: float) -> dict[str, torch.Tensor]:
    """The state dict (1 - t) * a + t * b; integer buffers (none in BDINN today) are a's."""
    theirs = b.state_dict()
    return {
        name: torch.lerp(mine, theirs[name], t) if mine.is_floating_point() else mine
        for name, mine in a.state_dict().items()
    }


@click.command("interpolate_checkpoints.py", cls=BdinnCommand)
@click.argument("first", type=WEIGHTS)
@click.argument("second", type=WEIGHTS)
@click.option(
    "--t",
    "t",
    type=FiniteFloatRange(0, 1),  # nan made every weight nan
    required=True,
    help="0 gives FIRST, 1 gives SECOND.",
)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing OUT and its JSON (never an input).")
@stops_cleanly
def main(first: Path, second: Path, t: float, out: Path, force: bool) -> None:
    """Write OUT = (1 - t) * FIRST + t * SECOND, two checkpoints of one architecture."""
    if out.resolve() in (first.resolve(), second.resolve()):
        raise click.UsageError(f"{out}: would overwrite an input; choose another --out")
    existing = [path for path in (out, checkpoint_sidecar(out)) if path.exists() or path.is_symlink()]
    if existing and not force:
        raise click.UsageError(f"{existing[0]}: already exists (pass --force to overwrite it)")
    try:
        a, meta = load_checkpoint(first)
        b, _ = load_checkpoint(second)
        if not a.config.same_weights(b.config):  # the coarse pass adds no weights: FIRST's setting is kept
            raise CheckpointError(f"{first} and {second}: different architectures, nothing to blend")
        a.load_state_dict(interpolate(a, b, t))
        blend = {"first": checkpoint_record(first), "second": checkpoint_record(second), "t": t}
        if not _one_start(blend["first"], blend["second"]):
            click.echo(
                f"interpolate_checkpoints.py: warning: {first} and {second} are not fine-tunes of one start "
                "(their records name different ones): the blend may be no working model; check it with "
                "bdinn-eval",
                err=True,
            )
        save_checkpoint(
            out, a, config_name=meta.get("config_name"), step=0, extra={"interpolated": blend}, replace=force
        )
    except (CheckpointError, OutputError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out}: (1 - {t}) x {first} + {t} x {second}")


def _one_start(first: dict, second: dict) -> bool:
    """Whether two checkpoint records share a start anywhere up their chains of fine-tunes (or one
    is the other's); an end without a training record (older, or a blend) tells nothing, nor do
    two trained from scratch."""
    if not (first.get("training") and second.get("training")):
        return True
    if not (first["training"].get("init") or second["training"].get("init")):
        return True
    return bool(_lineage(first) & _lineage(second))


def _lineage(record: dict | None) -> set[str]:
    """The digests of a checkpoint and of every start up its chain."""
    digests = set()
    while record:
        digests.add(record.get("sha256"))
        record = (record.get("training") or {}).get("init")
    return digests - {None}


if __name__ == "__main__":
    main()
