"""The clean pictures under the training folders: one file per picture, loaded as training sees it.

Wallpaper packages hold each picture at several resolutions, sometimes as links or copies under
other names; the split into training and validation is by picture, so they must count once.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..runtime.imageio import (
    IMAGE_SUFFIXES,
    from_float,
    read_image,
    stored_size,
    to_float,
)
from ..runtime.processing import MIN_SIDE
from .image_pair import ImagePair

MANIFEST_KIND = "bdinn-synthetic-pairs/"  # a pairs cache's manifest starts so (any version)


_SIZE_IN_NAME = re.compile(r"[_-]?(\d{3,5})x(\d{3,5})$")


def source_key(path: Path) -> str | None:
    """The picture a file shows, so that several resolutions of it count as one source.

    Plasma wallpapers are <Name>/contents/images[_dark]/<W>x<H>.ext plus a preview
    <Name>/contents/screenshot.* (skipped: None); elsewhere a trailing _<W>x<H> in the file name
    is dropped (mate-backgrounds' Elephants_3840x2160.jpg and Elephants.jpg are one picture).
    """
    parts = path.parts
    if _in_plasma_package(path):
        return parts[-4] + ("-dark" if parts[-2] == "images_dark" else "")
    if parts[-2:-1] == ("contents",) and path.stem == "screenshot" and (path.parent / "images").is_dir():
        return None  # the package's preview
    stem = _SIZE_IN_NAME.sub("", path.stem) or path.stem
    return f"{path.parent.name}-{stem}" if path.parent.name else stem


def _in_plasma_package(path: Path) -> bool:
    """Whether path is one resolution of a Plasma wallpaper package: <Name>/contents/images[_dark]/.
    Only that shape: any folder named contents above a user's pictures made them all one picture."""
    parts = path.parts
    return len(parts) > 3 and parts[-3] == "contents" and parts[-2] in ("images", "images_dark")


def picture_of(key: str) -> str:
    """The split unit: a wallpaper's dark and light versions are one picture."""
    return key.removesuffix("-dark")


def _pixels_in_name(path: Path) -> int:
    match = _SIZE_IN_NAME.search(path.stem)
    return int(match.group(1)) * int(match.group(2)) if match else 0


def _size_rank(path: Path) -> tuple[int, int, int, str]:
    """Largest first: pixels from the header (a Name.png beside its Name_128x100.png thumbnail
    has no size in its name), then the name's WxH (Plasma's 800x600.jpg and the other names are
    links to one 2560x1600.jpg, which stays the one named), bytes, the path."""
    size = stored_size(path)
    return (size[0] * size[1] if size else 0, _pixels_in_name(path), path.stat().st_size, str(path))


def discover_sources(clean_dirs: list[Path], exclude: Path | None = None) -> dict[str, Path]:
    """One file per source picture: its largest version (in pixels, else bytes).

    Searches the folders recursively (into linked folders too) for .png .jpg .jpeg .webp .tif(f)
    .bmp files, skipping hidden files and folders (.thumbnails, .git), anything under `exclude`
    (a cache kept inside a clean folder) and any other pairs cache found there (an earlier run's
    banded pictures are not clean ones). Pictures whose names make one key but that lie in
    different folders (x/img.png under two roots) are different pictures unless their files are
    the same bytes: their keys get a mark of their folder, relative to its root, so that moving
    the data keeps the keys (and the split).
    """
    groups: dict[tuple[str, str], list[Path]] = {}
    excluded = [exclude.resolve()] if exclude else []
    for position, folder in enumerate(map(Path, clean_dirs)):
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder of clean images")
        found = _files_under(folder)
        excluded += [cache.resolve() for cache in _caches_among(found)]
        for path in found:
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                continue
            resolved = path.resolve()
            if any(resolved.is_relative_to(cache) for cache in excluded):
                continue
            key = source_key(path.absolute())
            if key is not None:  # a wallpaper's resolutions lie in one folder, or in one contents/
                in_package = _in_plasma_package(path.absolute())
                home = "" if in_package else f"{position}:{path.parent.relative_to(folder)}"
                groups.setdefault((key, home), []).append(path)
    largest = {group: max(files, key=_size_rank) for group, files in sorted(groups.items())}
    shared = Counter(key for key, _ in largest)
    copies: dict[tuple[str, str], str] = {}  # one file per key and content: copies of one picture merge
    for (key, home), path in largest.items():
        content = _content(path) if shared[key] > 1 else ""
        copies.setdefault((key, content), home)
    homes = Counter(key for key, _ in copies)
    named = {(key if homes[key] == 1 else f"{key}-{short_hash(home)[:6]}"): (key, home)
             for (key, _), home in copies.items()}  # fmt: skip
    return _without_copies({name: largest[group] for name, group in named.items()},
                           {name: groups[group] for name, group in named.items()})  # fmt: skip


def one_source_per_picture(
    paired: list[ImagePair], clean_dirs: Sequence[Path], cache_dir: Path
) -> list[ImagePair]:
    """--pairs pairs whose clean files hold one picture (the same bytes: a picture banded two ways
    under two names, or the paired set's own clean folder also given as --clean) take one source,
    that --clean picture's key where there is one, so that the split keeps them on one side: they
    were split apart, and validation scored pictures the run trained on."""
    found = discover_sources(list(clean_dirs), exclude=cache_dir) if clean_dirs else {}
    originals = [(picture_of(key), path) for key, path in found.items()]  # sources as the cache's pairs have
    files = [*((pair.source, pair.clean) for pair in paired), *originals]
    sizes = Counter(_size(path) for _, path in files)
    contents = {path: _content(path) for _, path in files if sizes[_size(path)] > 1}  # only those may match
    first: dict[str, str] = {}  # content -> the source it goes by: a --clean key wins, else the first pair
    cleans = {source for source, _ in originals}
    for source, path in sorted(files, key=lambda item: (item[0] not in cleans, item[0])):
        if path in contents:
            first.setdefault(contents[path], source)
    return [
        replace(pair, source=first[contents[pair.clean]]) if pair.clean in contents else pair
        for pair in paired
    ]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # read (and refused) where it is loaded


def none_found(clean_dirs: list[Path]) -> str:
    """Why discover_sources found no picture, for its callers' one line: a pairs cache among the
    folders is skipped (an earlier run's pictures are no clean ones), which 'no images found'
    did not say of a folder full of them."""
    where = ", ".join(map(str, clean_dirs))
    caches = [cache for folder in clean_dirs for cache in _caches_among(_files_under(Path(folder)))]
    if caches:
        return (
            f"{where}: no clean pictures ({caches[0]} is a pairs cache, skipped: an earlier run's "
            "pictures); give the folder they were made from"
        )
    return f"{where}: no images found (looked for .png .jpg .jpeg .webp .tif .tiff .bmp)"


def _caches_among(files: list[Path]) -> list[Path]:
    """The pairs caches whose manifests are among `files`."""
    return [path.parent for path in files if path.name == "manifest.json" and is_pairs_cache(path.parent)]


def _files_under(folder: Path) -> list[Path]:
    """The files under `folder`, in order, through linked folders (rglob does not enter them: a
    folder of links to picture sets was 'no images found'), none in a hidden folder (a file
    manager's .thumbnails were pictures of their own). A link back to a folder above is not
    entered (a loop); two ways into one folder are both listed, whatever order the folder lists
    them in, for _without_copies to merge the same way on every copy of the data."""
    found: list[Path] = []
    above: dict[Path, frozenset[Path]] = {}  # each folder walked: the real folders down to it

    def unreadable(error: OSError) -> None:  # os.walk leaves such a folder out without a word
        warnings.warn(
            f"{error.filename}: cannot be read ({error.strerror}); its pictures are left out", stacklevel=5
        )

    for root, folders, files in os.walk(folder, followlinks=True, onerror=unreadable):
        here = Path(root)
        real = here.resolve()
        chain = above.get(here.parent, frozenset()) if here != folder else frozenset()
        if real in chain:
            folders[:] = []
            continue
        above[here] = chain | {real}
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [here / name for name in files if (here / name).is_file()]
    return sorted(found)


def _without_copies(named: dict[str, Path], members: dict[str, list[Path]]) -> dict[str, Path]:
    """One key per picture: a link to any version of a picture, or a copy of one, under another
    name was a second source, which the split could put on the other side (validation scored what
    training saw). The largest picture is kept, and the file itself rather than a link to it."""
    files_of = {key: {path.resolve() for path in files} for key, files in members.items()}
    sizes = Counter(path.stat().st_size for path in set().union(*files_of.values()))

    def identities(key: str) -> set[str]:  # a link is its file; only files of one size are read
        found = files_of[key]
        same_size = [path for path in found if sizes[path.stat().st_size] > 1]
        return {str(path) for path in found} | {_content(path) for path in same_size}

    claimed: set[str] = set()
    kept = {}
    for key in sorted(
        named, key=lambda k: (_size_rank(named[k])[:2], not named[k].is_symlink()), reverse=True
    ):
        own = identities(key)
        if not own & claimed:
            kept[key] = named[key]
        claimed |= own
    return dict(sorted(kept.items()))


def _content(path: Path) -> str:
    """What tells copies of a picture apart: its bytes' hash, or for a file that cannot be read its
    own path (a copy of nothing, then skipped with a warning where it is loaded, as damaged ones
    are; a permission-denied wallpaper stopped the run)."""
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable {path.resolve()}"


def is_pairs_cache(folder: Path) -> bool:
    """Whether `folder` is a bdinn pairs cache: a manifest.json that says so (any version: its
    format comes first), or one beside clean/ or banded/ (a manifest emptied or zeroed by a
    crash, or an older bdinn's, which the cache makes again)."""
    manifest = folder / "manifest.json"
    try:
        with manifest.open("rb") as file:
            if MANIFEST_KIND.encode() in file.read(256):
                return True
    except OSError:
        return False
    return any((folder / part).is_dir() for part in ("clean", "banded"))


def short_hash(*parts: object) -> str:
    """12 hex digits naming what the parts describe: cache file names, a folder's mark in a key."""
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12]


def _background(key: str, h: int, w: int) -> np.ndarray:
    """A vertical two-colour gradient, fixed per source, to put under transparent wallpapers."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    top, bottom = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).astype(np.float32)


def too_small(path: Path, height: int, width: int) -> str:
    return f"{path}: {width}x{height} is smaller than the {MIN_SIDE}x{MIN_SIDE} bdinn works on"


def load_clean(path: Path, key: str, max_side: int | None) -> np.ndarray:
    """The clean 8-bit RGB picture: composited if transparent, long side shrunk to max_side.

    Several mate-backgrounds (Silk, Waves, ...) are overlays whose RGB is one flat colour and
    whose picture is in the alpha channel, so alpha is composited over a smooth gradient rather
    than dropped.
    """
    rgba = to_float(read_image(path, keep_alpha=True))
    img, alpha = rgba[:, :, :3], rgba[:, :, 3:]
    if float(alpha.min()) < 1.0:
        img = img * alpha + _background(key, *img.shape[:2]) * (1 - alpha)
    h, w = img.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return from_float(img, 8)
