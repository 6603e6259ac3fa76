"""Clean pictures on disk -> cached (banded, clean) PNG pairs, with a manifest of what was made.

Pairs are keyed by the source file, its size limit, the degradation and GENERATOR_VERSION, so a
second run with the same settings makes nothing again, and runs with other settings share what
they can; a file lock lets several runs fill one cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..runtime.files import atomic_write_text
from ..runtime.imageio import (
    IMAGE_SUFFIXES,
    ImageError,
    read_image,
    write_image,
)
from ..runtime.processing import MIN_SIDE
from ..runtime.pyav import MissingPackage
from .clean_sources import (
    MANIFEST_KIND,
    discover_sources,
    is_pairs_cache,
    load_clean,
    none_found,
    picture_of,
    short_hash,
    too_small,
)
from .degrade import GENERATOR_VERSION, Degradation, sample_degradation
from .image_pair import ImagePair

MANIFEST_FORMAT = MANIFEST_KIND + "1"


def _file_id(path: Path) -> str:
    """Identity of a source file's content as far as the cache cares: path, size and mtime."""
    stat = path.stat()
    return short_hash(path.resolve(), stat.st_size, stat.st_mtime_ns)


def _safe(key: str) -> str:
    """A key as part of a cache file name: at most 100 characters (the names carry a hash too), so
    that a long folder and picture name stay within the file system's 255."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:100]


def _variants(key: str, seed: int, count: int) -> list[Degradation]:
    """`count` different degradations for one source, drawn from (seed, source name)."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    chosen: list[Degradation] = []
    for _ in range(100 * count):
        if len(chosen) == count:
            break
        candidate = sample_degradation(rng)
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


MAX_MANIFEST_BYTES = 256 << 20  # some 800,000 pairs; a 4 GB file was read whole first


def _check_size(manifest: Path) -> None:
    """ValueError for a manifest too large to be one, before it is read (a missing one passes)."""
    with contextlib.suppress(FileNotFoundError):
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"{manifest}: over {MAX_MANIFEST_BYTES >> 20} MB, not a manifest bdinn writes")


def _someone_elses(manifest: Path) -> bool:
    """A manifest.json that is not a pairs cache's, damaged or old: it has content that does not
    say it is one, and no clean/ or banded/ beside it (a cache whose manifest was emptied or
    zeroed by a crash, or written by an older bdinn, is made again as before)."""
    if is_pairs_cache(manifest.parent):
        return False
    with manifest.open("rb") as file:
        start = file.read(256)
    return bool(start.strip(b"\x00 \t\r\n"))


def _read_manifest(path: Path) -> dict[str, Any]:
    empty: dict[str, Any] = {"format": MANIFEST_FORMAT, "pairs": {}, "skipped": {}}
    if not path.is_file():
        return empty
    if _someone_elses(path):  # another program's manifest.json was replaced without a word
        raise ValueError(
            f"{path}: not a bdinn pairs cache's manifest (another program's file?); give --cache-dir a "
            "folder of its own"
        )
    _check_size(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        manifest = None
    if not _well_formed(manifest):
        warnings.warn(f"{path}: unreadable cache manifest, remaking the pairs", stacklevel=3)
        return empty
    return manifest if manifest.get("format") == MANIFEST_FORMAT else empty


_ENTRY_FIELDS = ("name", "banded", "clean", "source")


def _well_formed(manifest: Any) -> bool:
    """Whether a manifest has the shape bdinn writes, every path in it inside the cache folder: a
    cache is a folder people copy between machines, and a crafted manifest wrote pictures
    wherever its paths pointed (absolute, or climbing out with "..")."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("pairs", {}), dict):
        return False
    if not isinstance(manifest.get("skipped", {}), dict):
        return False
    for entry in manifest.get("pairs", {}).values():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in _ENTRY_FIELDS):
            return False
        for field in ("banded", "clean"):
            inside = Path(entry[field])
            if inside.is_absolute() or ".." in inside.parts or not inside.parts:
                return False
    preparations = manifest.get("preparations", {})
    if not isinstance(preparations, dict):
        return False
    for record in preparations.values():
        fields = (*SETTINGS, "order")
        if not isinstance(record, dict) or not all(isinstance(record.get(f), int) for f in fields):
            return False
        ids = record.get("pairs")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i in manifest["pairs"] for i in ids):
            return False
    return True


SETTINGS = ("seed", "variants", "max_side")  # what a preparation's pairs depend on


def _preparation_flags(settings: dict[str, Any]) -> str:
    return " ".join(f"--{name.replace('_', '-')} {settings[name]}" for name in SETTINGS if name in settings)


def _record_preparation(manifest: dict[str, Any], settings: dict[str, int], entry_ids: list[str]) -> bool:
    """Remember which pairs a finished preparation with these settings used, as the latest one.

    A cache outlives its pictures: an edited wallpaper or another seed adds pairs beside the old
    ones, and a run from the cache alone must train on the pairs the run that made it did, not on
    everything the cache ever held. Returns whether the manifest changed.
    """
    if not entry_ids:  # nothing could be read: the run fails, and an earlier record stays good
        return False
    preparations = manifest.setdefault("preparations", {})
    key = _preparation_flags(settings)
    latest = max((record["order"] for record in preparations.values()), default=0)
    record = {**settings, "pairs": sorted(entry_ids)}
    old = preparations.get(key)
    if old is not None and old["order"] == latest and {**old, "order": 0} == {**record, "order": 0}:
        return False
    preparations[key] = {**record, "order": latest + 1}
    return True


def _chosen_record(manifest: dict[str, Any], manifest_path: Path, wanted: dict[str, Any]) -> dict | None:
    """The latest preparation whose settings match `wanted`; None in a cache made before
    preparations were recorded."""
    preparations = manifest.get("preparations")
    if not preparations:
        return None
    if "max_side" in wanted and wanted["max_side"] is None:  # the Python API's "no limit", recorded as 0
        wanted = {**wanted, "max_side": 0}
    matching = [r for r in preparations.values() if all(r[name] == value for name, value in wanted.items())]
    if not matching:
        made = "; ".join(
            _preparation_flags(r) for r in sorted(preparations.values(), key=lambda r: r["order"])
        )
        raise ValueError(
            f"{manifest_path}: the cache holds no pairs made with {_preparation_flags(wanted)}; it holds "
            f"pairs made with {made} (pass those, or make the pairs with --clean DIR)"
        )
    return max(matching, key=lambda record: record["order"])


def _cache_manifest(cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """A pairs cache's manifest path and its content, checked; ValueError saying what is wrong."""
    manifest_path = Path(cache_dir) / "manifest.json"
    _check_size(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{manifest_path}: no pairs cache here (make one with --clean DIR --cache-dir {cache_dir})"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{manifest_path}: no readable pairs cache here ({reason})") from None
    if not _well_formed(manifest):
        raise ValueError(
            f"{manifest_path}: damaged pairs cache manifest (each pair needs a name, a source and banded "
            "and clean paths inside the cache folder); make the cache again"
        )
    if manifest.get("format") != MANIFEST_FORMAT or not manifest.get("pairs"):
        raise ValueError(f"{manifest_path}: not a bdinn pairs cache, or it lists no pairs")
    return manifest_path, manifest


def cache_preparation(cache_dir: Path, **wanted: Any) -> dict[str, int] | None:
    """The settings (seed, variants, max_side) of the cache's preparation `pairs_from_cache` takes
    with `wanted`: a run from the cache alone records and resumes with those, not its defaults.
    None for a cache made before preparations were recorded."""
    manifest_path, manifest = _cache_manifest(cache_dir)
    record = _chosen_record(manifest, manifest_path, wanted)
    return None if record is None else {name: record[name] for name in SETTINGS}


def _find_image(path: Path) -> Path | None:
    """`path`, or the same name with another image suffix (a cache recompressed for transfer)."""
    for candidate in (path, *(path.with_suffix(suffix) for suffix in IMAGE_SUFFIXES)):
        if candidate.is_file():
            return candidate
    return None


def pairs_from_cache(cache_dir: Path, **wanted: int) -> list[ImagePair]:
    """The pairs a synthetic-pairs cache's latest preparation used, without its clean sources.

    For training on another machine, such as a GPU server without the wallpapers or FFmpeg's
    encoders: copy the cache folder. Its pictures may be recompressed to another lossless format
    (found by name), and banded ones may be left behind: they are remade here from their clean
    picture exactly as the generator made them (codec ones need PyAV). A cache that several
    preparations shared holds the pairs of all of them: `wanted` (seed, variants, max_side, any of
    them) picks the latest preparation made with those settings.
    """
    cache_dir = Path(cache_dir)
    manifest_path, manifest = _cache_manifest(cache_dir)
    record = _chosen_record(manifest, manifest_path, wanted)
    if record is None:
        warnings.warn(
            f"{manifest_path}: the cache does not record which pairs a run used (made by an earlier "
            f"bdinn): training on all {len(manifest['pairs'])} pairs it holds",
            stacklevel=2,
        )
        entries = list(manifest["pairs"].values())
    else:
        entries = [manifest["pairs"][entry_id] for entry_id in record["pairs"]]
    pairs = []
    for entry in sorted(entries, key=lambda e: e["name"]):
        try:
            degradation = Degradation(**entry["degradation"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{manifest_path}: pair {entry.get('name')!r}: bad degradation ({exc})") from exc
        clean = _find_image(cache_dir / entry["clean"])
        if clean is None:
            raise ValueError(
                f"{cache_dir / entry['clean']}: missing from the pairs cache "
                "(copy the clean pictures with the manifest; only banded ones can be remade)"
            )
        banded = _find_image(cache_dir / entry["banded"])
        if banded is None:
            banded = cache_dir / entry["banded"]
            if not banded.resolve().is_relative_to(cache_dir.resolve()):  # a link inside leads out
                raise ValueError(
                    f"{banded}: missing, and its folder leads out of the pairs cache through a link; "
                    "copy the banded picture too, or the cache without links"
                )
            try:
                write_image(banded, degradation.apply(read_image(clean)))
            except MissingPackage as exc:
                raise ValueError(
                    f"{banded}: missing, and remaking a codec encode needs PyAV ({exc}); "
                    "copy the banded picture too"
                ) from exc
        pairs.append(ImagePair(entry["name"], banded, clean, entry["source"], degradation.family))
    return pairs


def _update_manifest(cache_dir: Path, added: dict[str, dict], preparation: tuple | None = None) -> None:
    """Add this run's new entries (and its finished preparation) to the manifest on disk, under a
    lock: two runs preparing one cache at once each rewrote the manifest they had read, and the
    last to write lost the other's pairs and preparation."""
    path = cache_dir / "manifest.json"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".manifest.lock").open("a") as lock:  # "a": an unchanged cache stays untouched
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = _read_manifest(path)
        for part, entries in added.items():
            manifest[part].update(entries)
        recorded = preparation is not None and _record_preparation(manifest, *preparation)
        if any(added.values()) or recorded or not path.is_file():
            text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
            atomic_write_text(path, text)


def prepare_synthetic_pairs(
    clean_dirs: list[Path],
    cache_dir: Path,
    variants_per_image: int = 3,
    seed: int = 0,
    max_side: int | None = 1920,
    record: bool = True,
) -> list[ImagePair]:
    """Banded/clean 8-bit PNG pairs for every source picture in clean_dirs, cached in cache_dir.

    Each source (several resolutions of one picture count once, the largest is used) gets
    `variants_per_image` different degradations drawn from (seed, source name). The files are
    written once; manifest.json maps a hash of (source path, size, mtime, max_side, degradation)
    to them, so a second call with the same arguments reads the cache and decodes nothing.
    Unreadable sources are skipped, remembered in the manifest, and reported in one warning. Once
    done, the manifest records which pairs it used, for `pairs_from_cache` (not with record=False:
    a look at a run's pairs, as validation_split.py takes, is not a preparation).
    """
    if variants_per_image < 1:
        raise ValueError(f"variants_per_image must be at least 1, got {variants_per_image}")
    cache_dir = Path(cache_dir)
    for folder in clean_dirs:  # its pictures would all be skipped as the cache's own
        if Path(folder).resolve().is_relative_to(cache_dir.resolve()):
            raise ValueError(
                f"{cache_dir}: the pairs cache would hold the clean folder {folder}; give it its own"
            )
    sources = discover_sources(list(clean_dirs), exclude=cache_dir)
    if not sources:
        raise ValueError(none_found(list(clean_dirs)))
    for part in ("clean", "banded"):  # a link there wrote the pairs wherever it led
        if not (cache_dir / part).resolve().is_relative_to(cache_dir.resolve()):
            raise ValueError(
                f"{cache_dir / part}: leads out of the pairs cache through a link; remove the link"
            )
    manifest_path = cache_dir / "manifest.json"
    if not manifest_path.is_file():  # before the first picture: what marks the folder as a cache, for
        _update_manifest(cache_dir, {})  # a run whose --clean holds it (it trained on its pictures)
    manifest = _read_manifest(manifest_path)
    added: dict[str, dict] = {"pairs": {}, "skipped": {}}  # saved into the manifest on disk as made
    pairs: list[ImagePair] = []
    used: list[str] = []
    skipped: list[str] = []
    for key, path in tqdm(sources.items(), desc="banded pairs", unit="picture", disable=None):
        file_id = _file_id(path)
        if file_id in manifest["skipped"]:
            skipped.append(manifest["skipped"][file_id])
            continue
        clean_rel = f"clean/{_safe(key)}_{short_hash(file_id, max_side, GENERATOR_VERSION)}.png"
        clean: np.ndarray | None = None
        made: list[ImagePair] = []
        made_ids: list[str] = []
        changed = False
        for degradation in _variants(key, seed, variants_per_image):
            entry_id = short_hash(file_id, max_side, degradation.id, GENERATOR_VERSION)
            entry = manifest["pairs"].get(entry_id)
            if not (entry and (cache_dir / entry["banded"]).is_file() and (cache_dir / clean_rel).is_file()):
                if clean is None:
                    try:
                        clean = load_clean(path, key, max_side)
                        if min(clean.shape[:2]) < MIN_SIDE:  # said once, of the user's file, not per pair
                            raise ImageError(too_small(path, *clean.shape[:2]))
                    except ImageError as exc:
                        manifest["skipped"][file_id] = added["skipped"][file_id] = str(exc)
                        skipped.append(str(exc))
                        made, made_ids, changed = [], [], True
                        break
                if not (cache_dir / clean_rel).is_file():
                    write_image(cache_dir / clean_rel, clean)
                entry = {
                    "name": f"{key}__{degradation.id}",
                    "banded": f"banded/{_safe(key)}__{degradation.id}_{entry_id}.png",
                    "clean": clean_rel,
                    "source": picture_of(key),
                    "file": str(path),
                    "degradation": asdict(degradation),
                }
                write_image(cache_dir / entry["banded"], degradation.apply(clean))
                manifest["pairs"][entry_id] = added["pairs"][entry_id] = entry
                changed = True
            made_ids.append(entry_id)
            made.append(
                ImagePair(
                    entry["name"],
                    cache_dir / entry["banded"],
                    cache_dir / clean_rel,
                    entry["source"],
                    degradation.family,
                )
            )
        pairs += made
        used += made_ids
        if changed:  # saved per picture, so an interrupted run keeps what it made
            _update_manifest(cache_dir, added)
            added = {"pairs": {}, "skipped": {}}
    if record:  # only once whole: a cut run is not a preparation
        settings = {"seed": seed, "variants": variants_per_image, "max_side": max_side or 0}
        _update_manifest(cache_dir, added, (settings, used))
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable or too small clean image(s) of {len(sources)}, "
            f"e.g. {skipped[0]}",
            stacklevel=2,
        )
    return pairs
