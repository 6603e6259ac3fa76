"""Link the clean pictures `bdinn-train` held out for validation into a folder, for bdinn-eval.

    python scripts/validation_split.py --clean /usr/share/wallpapers --clean /usr/share/backgrounds/mate \
        --cache-dir runs/pairs -o runs/val-clean

Uses the trainer's own pair preparation (read from its cache) and split, with the same
--val-fraction and --seed, so the folder holds exactly the pictures training never saw.
"""

from __future__ import annotations

from pathlib import Path

import click

from bdinn.train.data import split_by_source
from bdinn.train.degrade import prepare_synthetic_pairs


@click.command()
@click.option(
    "--clean", "clean_dirs", multiple=True, required=True, type=click.Path(exists=True, path_type=Path)
)
@click.option("--cache-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True)  # fmt: skip
@click.option("--variants", default=3, show_default=True)
@click.option("--max-side", default=1920, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(
    clean_dirs: tuple[Path, ...], cache_dir: Path, out: Path, val_fraction: float, variants: int,
    max_side: int, seed: int,
) -> None:  # fmt: skip
    """Symlink the validation split's clean pictures into OUT."""
    pairs = prepare_synthetic_pairs(list(clean_dirs), cache_dir, variants, seed, max_side)
    _, val = split_by_source(pairs, val_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    cleans = sorted({pair.clean.resolve() for pair in val})
    for clean in cleans:
        link = out / clean.name
        if not link.exists():
            link.symlink_to(clean)
    click.echo(f"{len(cleans)} validation pictures linked into {out}")


if __name__ == "__main__":
    main()
