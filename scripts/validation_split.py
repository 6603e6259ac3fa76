"""Link the clean pictures `bdinn-train` held out for validation into a folder, for bdinn-eval.

    python scripts/validation_split.py --clean /usr/share/wallpapers --clean /usr/share/backgrounds/mate \
        --run runs/lite -o runs/val-clean

Uses the trainer's own pair preparation and split with the run's own settings (--run: its
state.json gives --val-fraction, --variants, --max-side and --seed, and its pairs cache), so the
folder holds exactly the pictures training never saw. Without --run, give --cache-dir and the
settings the run used: other settings would add pairs made with them to that cache. The
defaults are the bundled model's settings, so `--cache-dir runs/pairs` alone gives its 13
held-out pictures.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import click

from bdinn.runtime.cli_options import BdinnCommand, FiniteFloatRange, one_line_warnings, stops_cleanly
from bdinn.runtime.files import missing_folders, remove_empty
from bdinn.runtime.imageio import IMAGE_SUFFIXES
from bdinn.train.clean_sources import is_pairs_cache
from bdinn.train.data import large_enough, split_by_source
from bdinn.train.pairs_cache import prepare_synthetic_pairs
from bdinn.train.trainer import SEED_MAX, TrainingError, read_state


def run_settings(run: Path) -> tuple[dict, Path, list[str]]:
    """The data settings a bdinn-train run recorded in its state.json, its pairs cache (the one it
    recorded, e.g. a --cache-dir shared by several runs; else RUN/pairs) and its --clean folders."""
    state = run / "state.json"
    try:
        settings = read_state(state)["settings"]
        data = settings["data"]
        recorded = {"val_fraction": data["val_fraction"], "variants": data["variants"],
                    "max_side": data["max_side"], "seed": settings["seed"]}  # fmt: skip
        origin = settings.get("data_origin") or {}
        paired, cache, clean = origin.get("pairs") or [], origin.get("cache"), origin.get("clean") or []
    except TrainingError as exc:
        raise click.BadParameter(str(exc), param_hint="--run") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise click.BadParameter(f"{state}: not a bdinn-train state ({exc})", param_hint="--run") from None
    if paired:  # its split covered those pairs too, and held out other pictures than these alone give
        raise click.BadParameter(
            f"{state}: the run also trained on --pairs {', '.join(map(str, paired))}, whose pictures "
            "this script cannot split as it did; score its held-out pairs with bdinn-eval --pairs",
            param_hint="--run",
        )
    bad = [f"{name} {value!r}" for name, value in recorded.items() if not _in_bounds(name, value)]
    if bad:  # it failed after the pairs were made, naming no file
        raise click.BadParameter(f"{state}: not a bdinn-train state ({', '.join(bad)})", param_hint="--run")
    # The recorded cache only where it is one (or an empty folder): a state.json anyone can edit
    # made the pairs be written into whatever folder it named.
    recorded_cache = Path(cache if isinstance(cache, str) else run / "pairs")
    is_one = recorded_cache.is_dir() and (is_pairs_cache(recorded_cache) or not any(recorded_cache.iterdir()))
    if not is_one and recorded_cache != run / "pairs":  # the split is the same; the encoding is not free
        warnings.warn(
            f"{state}: names {recorded_cache} as its pairs cache, which is not one; making the pairs in "
            f"{run / 'pairs'}",
            stacklevel=2,
        )
    folders = [str(folder) for folder in clean] if isinstance(clean, list) else []
    return recorded, recorded_cache if is_one else run / "pairs", folders


def check_clean_folders(given: tuple[Path, ...], recorded: list[str], state: Path) -> None:
    """--clean must be the run's own folders: one left out (or a copy less a picture) made another
    split, whose held-out pictures were the run's training pictures. A run copied from a machine
    with other folders, or one that records none, cannot be checked: said."""
    if not recorded:  # trained from a pairs cache alone, or before bdinn recorded its folders
        warnings.warn(
            f"{state}: records no --clean folders, so --clean cannot be checked: give the folders its "
            "pairs cache was made from, or training pictures are listed as held out",
            stacklevel=2,
        )
        return
    if {str(folder.resolve()) for folder in given} == set(recorded):
        return
    if all(Path(folder).is_dir() for folder in recorded):
        raise click.BadParameter(
            f"{state} trained on {', '.join(recorded)}; give exactly those folders (others make another "
            "split, whose held-out pictures the run trained on)",
            param_hint="--clean",
        )
    warnings.warn(
        f"{state}: the run's --clean folders ({', '.join(recorded)}) are not all here, so the pictures "
        "of --clean cannot be checked against them: they must be the same, or training pictures are "
        "listed as held out",
        stacklevel=2,
    )


def _a_split_link(path: Path) -> bool:
    """A link this script makes, for any run: a picture name pointing into a pairs cache's clean/
    folder. Other links in the folder are the user's (a mistyped -o ~ must not take theirs)."""
    if not path.is_symlink() or path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    return Path(os.readlink(path)).parent.name == "clean"


def _in_bounds(name: str, value: object) -> bool:
    """A recorded setting within bdinn-train's own bounds."""
    if isinstance(value, bool):
        return False
    if name == "val_fraction":
        return isinstance(value, int | float) and 0 <= value < 1
    if name == "seed":
        return isinstance(value, int)
    return isinstance(value, int) and value >= (64 if name == "max_side" else 1)


@click.command("validation_split.py", cls=BdinnCommand)
@click.option(
    "--clean",
    "clean_dirs",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The bdinn-train run folder: its settings and pairs cache.")  # fmt: skip
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run's pairs cache [default: the one the run recorded, else RUN/pairs].")  # fmt: skip
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="[default: the run's, else 0.2]")  # fmt: skip
@click.option("--variants", type=click.IntRange(min=1), default=None, help="[default: the run's, else 3]")
@click.option(  # bdinn-train's bound: no run made its pairs smaller
    "--max-side", type=click.IntRange(min=64), default=None, help="[default: the run's, else 1920]"
)
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, help="[default: the run's, else 0]")
@stops_cleanly
@one_line_warnings()
def main(
    clean_dirs: tuple[Path, ...], run: Path | None, cache_dir: Path | None, out: Path,
    val_fraction: float | None, variants: int | None, max_side: int | None, seed: int | None,
) -> None:  # fmt: skip
    """Symlink the validation split's clean pictures into OUT."""
    if run is None and cache_dir is None:
        raise click.UsageError("give --run (a bdinn-train run folder) or --cache-dir and the run's settings")
    if run:
        recorded, cache, folders = run_settings(run)
        check_clean_folders(clean_dirs, folders, run / "state.json")
    else:
        recorded, cache = {"val_fraction": 0.2, "variants": 3, "max_side": 1920, "seed": 0}, cache_dir
    given = {"val_fraction": val_fraction, "variants": variants, "max_side": max_side, "seed": seed}
    s = {**recorded, **{k: v for k, v in given.items() if v is not None}}
    cache = cache_dir or cache
    own = sorted(p.name for p in out.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_symlink())
    if own:  # bdinn-eval --clean OUT would score them as held out too
        raise click.ClickException(
            f"{out}: holds pictures of its own ({own[0]}); give a new folder, or one this script made"
        )
    made = missing_folders(out)
    try:  # before the pairs, which may take minutes of encoding
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"{out}: cannot make the folder ({exc.strerror}); choose another -o"
        ) from None
    try:
        pairs = prepare_synthetic_pairs(  # a look at the run's pairs, not a preparation of its own
            list(clean_dirs), cache, s["variants"], s["seed"], s["max_side"], record=False
        )
        _, val = split_by_source(large_enough(pairs), s["val_fraction"], s["seed"])  # as bdinn-train splits
    except BaseException as exc:  # a failed or interrupted split leaves no empty folder behind
        remove_empty(made)
        if isinstance(exc, ValueError):  # no pictures, an unreadable cache, a run's state out of range
            raise click.ClickException(str(exc)) from None
        raise
    cleans = sorted({pair.clean.resolve() for pair in val})
    wanted = {clean.name: clean for clean in cleans}
    for link in out.iterdir():  # another split's links (any run's) would score its training pictures
        if _a_split_link(link) and link.name not in wanted:
            link.unlink()
    for name, clean in wanted.items():
        link = out / name
        if link.is_symlink() and link.resolve() != clean:  # from another split: replaced
            link.unlink()
        if not link.exists():
            link.symlink_to(clean)
    click.echo(f"{len(cleans)} validation picture{'' if len(cleans) == 1 else 's'} linked into {out}")


if __name__ == "__main__":
    main()
