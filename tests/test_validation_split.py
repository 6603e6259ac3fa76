"""scripts/validation_split.py: bad input is one line and writes nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bdinn.train.checkpoint import STATE_FORMAT

SCRIPT = Path(__file__).parents[1] / "scripts" / "validation_split.py"
DATA = Path(__file__).parent / "data"


def _split(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_neither_a_run_nor_a_cache_is_one_line_and_exit_2(tmp_path):
    """click's four lines (usage, help hint, blank, error) named no program of a pipeline."""
    done = _split("--clean", DATA, "-o", tmp_path / "val")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "validation_split.py: error: give --run (a bdinn-train run folder) or --cache-dir and the run's "
        "settings (see validation_split.py --help)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_pictures_is_one_line_and_exit_1(tmp_path):
    """prepare_synthetic_pairs' ValueError ended in a traceback."""
    (tmp_path / "empty").mkdir()
    done = _split("--clean", tmp_path / "empty", "--cache-dir", tmp_path / "pairs", "-o", tmp_path / "val")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"validation_split.py: error: {tmp_path / 'empty'}: no images found (looked for .png .jpg .jpeg "
        ".webp .tif .tiff .bmp)"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # -o is made first, then taken back


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ("--clean", DATA / "soft-shapes.png"),
            f"'--clean': Directory '{DATA / 'soft-shapes.png'}' is a file",
        ),
        (("--clean", DATA, "--variants", 0), "'--variants': 0 is not in the range x>=1"),
        (("--clean", DATA, "--max-side", -5), "'--max-side': -5 is not in the range x>=64"),
    ],
)
def test_settings_no_run_could_have_used_are_one_line_and_exit_2(tmp_path, option, message):
    """A file as --clean and --variants 0 ended in tracebacks; --max-side -5 made 1x1 pairs."""
    done = _split(*option, "--cache-dir", tmp_path / "pairs", "-o", tmp_path / "val")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"validation_split.py: error: Invalid value for {message} (see validation_split.py --help)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_cannot_be_made_is_one_line_and_exit_1(tmp_path):
    """It ended in an OSError traceback after the pairs were made; now it is found before them."""
    (tmp_path / "file").write_text("")
    done = _split("--clean", DATA, "--cache-dir", tmp_path / "pairs", "--variants", 1,
                  "-o", tmp_path / "file" / "val")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"validation_split.py: error: {tmp_path / 'file' / 'val'}: cannot make the folder (Not a directory); "
        "choose another -o"
    ]
    assert not (tmp_path / "pairs").exists()  # no minutes of encoding first


def test_an_interrupted_split_takes_back_the_folders_it_made(tmp_path, monkeypatch):
    """Ctrl-C while the pairs were made left the empty -o folders: only a ValueError took them back."""
    import importlib.util

    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location("validation_split", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "prepare_synthetic_pairs", interrupted)
    out = tmp_path / "deep" / "val"
    result = CliRunner().invoke(
        script.main, ["--clean", str(DATA), "--cache-dir", str(tmp_path / "p"), "-o", str(out)]
    )
    assert result.exit_code == 130 and "Aborted!" in result.output  # the shell's status for Ctrl-C
    assert list(tmp_path.iterdir()) == []


def _write_state(run: Path, settings: dict) -> None:
    """A state.json as bdinn-train writes it, with these settings."""
    state = {"format": STATE_FORMAT, "settings": settings, "step": 10, "param_groups": [], "best_psnr": None}
    (run / "state.json").write_text(json.dumps(state))


def test_a_run_state_out_of_bounds_is_refused_before_the_pairs_naming_its_file(tmp_path):
    """val_fraction 5 in state.json failed after the pairs were made, as 'val_fraction must be in
    [0, 1), got 5', naming no file."""
    run = tmp_path / "run"
    run.mkdir()
    _write_state(run, {"data": {"val_fraction": 5, "variants": 1, "max_side": 256}, "seed": 0})
    done = _split("--clean", DATA, "--run", run, "-o", tmp_path / "val")
    assert done.returncode == 2
    assert f"{run / 'state.json'}: not a bdinn-train state (val_fraction 5)" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and list(run.iterdir()) == [
        run / "state.json"
    ]


def _run_state(run: Path, origin: dict) -> None:
    run.mkdir()
    data = {"val_fraction": 0.5, "variants": 1, "max_side": 64}
    _write_state(run, {"data": data, "seed": 0, "data_origin": origin})


def test_a_state_that_is_not_one_is_one_line(tmp_path):
    """The script reads a state as the trainer does: the same words for the same damage (without
    the trainer's advice: the script has no --force)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"settings": {"seed": 0}}))
    done = _split("--clean", DATA, "--run", run, "-o", tmp_path / "val")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"validation_split.py: error: Invalid value for --run: {run / 'state.json'}: not a bdinn training "
        "state (see validation_split.py --help)"
    ]


def test_a_run_is_split_from_the_pairs_cache_it_recorded(tmp_path):
    """--run always looked in RUN/pairs: a run trained with --cache-dir elsewhere (the model card's
    recipe) had every pair encoded again into a second cache."""
    shared, run = tmp_path / "shared", tmp_path / "run"
    shared.mkdir()
    _run_state(run, {"clean": [str(DATA)], "pairs": [], "cache": str(shared)})
    done = _split("--clean", DATA, "--run", run, "-o", tmp_path / "val")
    assert done.returncode == 0, done.stderr
    assert not (run / "pairs").exists() and any((shared / "banded").iterdir())
    linked = [p.resolve() for p in (tmp_path / "val").iterdir()]
    assert linked and all(p.is_relative_to(shared.resolve()) for p in linked)
    # Another run's split into the same folder: its link into another cache stayed, and bdinn-eval
    # scored that run's held-out picture, one this run may have trained on, as held out.
    other_cache = tmp_path / "other" / "pairs" / "clean"
    other_cache.mkdir(parents=True)
    (other_cache / "other.png").write_bytes(next(DATA.glob("*.png")).read_bytes())
    stale = tmp_path / "val" / "other.png"
    stale.symlink_to(other_cache / "other.png")
    users = tmp_path / "val" / ".bashrc"  # links that are no split's stay (a mistyped -o ~)
    users.symlink_to(tmp_path / "dotfiles" / "bashrc")
    assert _split("--clean", DATA, "--run", run, "-o", tmp_path / "val").returncode == 0
    assert not stale.is_symlink() and users.is_symlink()
    assert sorted(p.resolve() for p in (tmp_path / "val").glob("*.png")) == sorted(linked)
    (tmp_path / "val" / "mine.png").write_bytes(next(DATA.glob("*.png")).read_bytes())
    done = _split("--clean", DATA, "--run", run, "-o", tmp_path / "val")
    assert done.returncode == 1 and "val: holds pictures of its own (mine.png)" in done.stderr


def test_a_recorded_cache_that_is_no_cache_is_not_written_into(tmp_path):
    """state.json comes with a run folder and anyone can edit it: a cache it named was written
    into, pictures and manifest, whatever folder that was."""
    victim, run = tmp_path / "documents", tmp_path / "run"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    _run_state(run, {"clean": [str(DATA)], "pairs": [], "cache": str(victim)})
    done = _split("--clean", DATA, "--run", run, "-o", tmp_path / "val")
    assert done.returncode == 0, done.stderr
    assert f"names {victim} as its pairs cache, which is not one; making the pairs in" in done.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["notes.txt"]
    assert (run / "pairs" / "manifest.json").is_file()


def test_a_run_that_trained_on_ready_pairs_too_is_refused(tmp_path):
    """Its split covered the --pairs pictures as well: splitting the synthetic pairs alone linked
    a picture the run had trained on, with exit 0."""
    run = tmp_path / "run"
    _run_state(run, {"clean": [str(DATA)], "pairs": ["/data/banded", "/data/clean"], "cache": None})
    done = _split("--clean", DATA, "--run", run, "-o", tmp_path / "val")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"validation_split.py: error: Invalid value for --run: {run / 'state.json'}: the run also trained on "
        "--pairs /data/banded, /data/clean, whose pictures this script cannot split as it did; score its "
        "held-out pairs with bdinn-eval --pairs (see validation_split.py --help)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_clean_folders_other_than_the_runs_are_refused(tmp_path):
    """--clean with one of the run's two folders left out made another split, exit 0: six of its
    seven 'held-out' pictures were pictures the run trained on."""
    more, run = tmp_path / "more", tmp_path / "run"
    more.mkdir()
    _run_state(run, {"clean": [str(DATA.resolve()), str(more.resolve())], "pairs": [], "cache": None})
    done = _split("--clean", DATA, "--run", run, "-o", tmp_path / "val")
    assert done.returncode == 2 and not (tmp_path / "val").exists()
    folders = f"{DATA.resolve()}, {more.resolve()}"
    said = f"Invalid value for --clean: {run / 'state.json'} trained on {folders}; give exactly those folders"
    assert said in done.stderr
    # A run copied from another machine, whose folders are not here: said, and split as asked.
    copied = tmp_path / "copied"
    _run_state(copied, {"clean": ["/elsewhere/wallpapers"], "pairs": [], "cache": None})
    done = _split("--clean", DATA, "--run", copied, "-o", tmp_path / "val")
    assert done.returncode == 0, done.stderr
    assert "the run's --clean folders (/elsewhere/wallpapers) are not all here" in done.stderr
    # A run trained from a pairs cache alone records no folders: said too.
    cached = tmp_path / "cached"
    _run_state(cached, {"clean": [], "pairs": [], "cache": None})
    done = _split("--clean", DATA, "--run", cached, "-o", tmp_path / "val")
    assert done.returncode == 0 and "records no --clean folders, so --clean cannot be checked" in done.stderr
