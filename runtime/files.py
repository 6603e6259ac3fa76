"""Atomic file writes: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .engine_sidecar import plan_sidecar
from .stop_signals import signals_deferred

# Failures of the output location itself, as opposed to errors of what is being written: the disk
# or a quota full (also what an encoder's errors can be taken for), and the folder itself.
SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_LOCATION_ERRNOS = SPACE_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}


class OutputError(ValueError):
    """The output path cannot be written: a one-line message naming it, for every CLI."""


@dataclass(frozen=True)
class WrittenFile:
    """A file this job wrote, with the identity its temporary file had before it took the name:
    a job that fails later takes back its own file, never one another job (with --force) put in
    its place meanwhile."""

    path: Path
    identity: tuple[int, int, int, int]  # device, inode, size, modification time (ns)
    made: tuple[Path, ...] = ()  # the folders made for it, deepest first: taken back when empty

    def take_back(self) -> None:
        try:
            ours = _identity(os.stat(self.path)) == self.identity
        except OSError:
            return  # gone, or out of reach: nothing of ours to take back
        if ours:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            remove_empty(self.made)


def _identity(found: os.stat_result) -> tuple[int, int, int, int]:
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], object], replace: bool = True
) -> WrittenFile:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it over `path`.

    The temporary file is created with the usual 0o666 & ~umask permissions (tempfile.mkstemp
    would make it 0o600, and the rename would carry that over to the final file). A folder that
    cannot be made or written, or a full disk, is an OutputError naming `path`, not the
    temporary file; nothing is left behind. Without `replace`, a file that appeared at `path`
    during the work (another job's output of the same name) is kept and this one is an OutputError.
    """
    path = Path(path)
    made = missing_folders(path.parent)
    try:
        tmp = _reserve_temporary(path)
    except OutputError:
        remove_empty(made)
        raise
    try:
        write(str(tmp))
        identity = _identity(os.stat(tmp))  # a rename or a hard link keeps all four
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        remove_empty(made)
        if isinstance(exc, OSError) and exc.errno in _LOCATION_ERRNOS and _about(exc, tmp):
            raise _output_error(path, exc) from None
        raise
    return WrittenFile(path, identity, tuple(made))


def atomic_write_text(path: str | os.PathLike, text: str, replace: bool = True) -> WrittenFile:
    """atomic_write of a text, in UTF-8 whatever the locale (reports carry file names)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), replace=replace)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, replace: bool = True) -> WrittenFile:
    """atomic_write of bytes already in memory."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), replace=replace)


_NEW_PRIVATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def restored_if_failed(path: Path) -> Iterator[list[WrittenFile]]:
    """Put `path`'s present file back if the block fails: bdinn-export --force replaces the ONNX
    file beside a plan before the engine builds, and a build that failed left the new graph beside
    the old plan. The block appends what it wrote there, which is taken back first; the old file
    is put back only where nothing stands at the name then (another job's --force output there is
    kept). It waits under a temporary name (_kept), a symbolic link as the link itself (the write
    replaced the link, not what it points to)."""
    ours: list[WrittenFile] = []
    link = os.readlink(path) if path.is_symlink() else None
    kept = _kept(path) if link is None and path.is_file() else None
    try:
        yield ours
    except BaseException:
        _take_back(ours)
        if not (path.exists() or path.is_symlink()):  # the old file itself, or another job's, stays
            if link is not None:
                path.symlink_to(link)
            elif kept is not None:
                os.replace(kept, path)
        raise
    finally:
        if kept is not None:
            kept.unlink(missing_ok=True)


def _kept(path: Path) -> Path:
    """A second name for `path`'s file beside it: a hard link, or a copy where the file system has
    none (FAT, sshfs, some NFS), written into a new file only (a link planted at the name meanwhile
    is refused, not written through), private while it is written, then with the old file's mode
    and times where they can be set."""
    kept = _reserve_temporary(path)
    copied = False
    try:
        kept.unlink()
        try:
            os.link(path, kept)
        except OSError:
            with path.open("rb") as old, os.fdopen(os.open(kept, _NEW_PRIVATE, 0o600), "wb") as copy:
                copied = True
                shutil.copyfileobj(old, copy)
            with contextlib.suppress(OSError):
                shutil.copystat(path, kept)
    except OSError as exc:
        if copied:  # a copy cut short (a full disk): ours to remove; what was at the name is not
            with contextlib.suppress(OSError):
                kept.unlink()
        raise _output_error(path, exc) from None
    return kept


def _take_back(written: list[WrittenFile]) -> None:
    for file in written:
        file.take_back()


class StoppedBySignal(KeyboardInterrupt):
    """A signal came while files were written together, and they were taken back; the signal's
    own handler acts next (this is what propagates where that handler does not raise)."""


@contextlib.contextmanager
def written_together(*paths: Path) -> Iterator[list[WrittenFile]]:
    """Files written as one (a plan and its sidecar; reports of one run): the block appends each
    WrittenFile; where a write fails (a full disk) or a signal comes, the new files are taken back
    and the ones there before (--force) put back, all with the signal held until that is done (a
    default SIGTERM handler killed the process between the two)."""
    with signals_deferred() as caught, contextlib.ExitStack() as restoring:
        for path in paths:
            restoring.enter_context(restored_if_failed(path))
        written: list[WrittenFile] = []
        try:
            yield written
            if caught:
                raise StoppedBySignal
        except BaseException:
            _take_back(written)
            raise


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those above it that do not exist yet, deepest first: the ones a write into
    it makes, for remove_empty to take back."""
    return [each for each in (folder, *folder.parents) if not each.exists()]


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove these folders, deepest first, so that a command that fails leaves no empty ones;
    one that something else filled meanwhile stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _publish_new(tmp: Path, path: Path) -> None:
    """Give `tmp` the name `path` only if nothing has it: a hard link fails on an existing name,
    where a rename would replace it. Where the link fails otherwise (FAT and some network mounts
    have no hard links) comes the check and the rename, a moment apart, whose errors are the
    location's as before."""
    try:
        os.link(tmp, path)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or path.exists() or path.is_symlink():
            raise OutputError(f"{path}: appeared while this was being written and is kept (pass --force "
                              "to overwrite it)") from None  # fmt: skip
        os.replace(tmp, path)
    else:
        with contextlib.suppress(OSError):  # the output is there; a stray temporary name is no failure
            tmp.unlink()


def resolved(path: str | os.PathLike) -> Path:
    """Path.resolve(), but a loop of symbolic links (RuntimeError on Python 3.10-3.12) stays its
    absolute path: unequal to any other file, it fails alone where it is read or written."""
    try:
        return Path(path).resolve()
    except RuntimeError:
        return Path(path).absolute()


def check_writable(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), replace: bool = True
) -> None:
    """Fail now with an OutputError, not after minutes of work, if `path` cannot be written:
    its folder is made and a temporary file is created there and removed, and so are the
    folders made for it (the write makes them again), so a command that fails leaves no empty
    folders. An output that is one of the command's `inputs` (by any spelling) is refused:
    writing it would destroy it; so is an existing file without `replace` (--force)."""
    path = Path(path)
    if resolved(path) in {resolved(p) for p in inputs}:
        raise OutputError(f"{path}: is one of this command's inputs; choose another output")
    if path.is_dir():  # the rename at the end would fail, after all the work
        raise OutputError(f"{path}: is a folder; name a file to write")
    if path.exists() and not path.is_file():  # the rename would put a file in its place
        raise OutputError(f"{path}: is a named pipe or device, not a file; name a file to write")
    if not replace and (path.exists() or path.is_symlink()):
        raise OutputError(f"{path}: already exists (pass --force to overwrite it)")
    made = missing_folders(path.parent)
    try:
        _reserve_temporary(path).unlink()
    finally:
        remove_empty(made)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in pieces: what engines and checkpoints record of where they came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while piece := file.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def user_cache(kind: str) -> Path:
    """bdinn's folder `kind` in the user's cache ($XDG_CACHE_HOME, else ~/.cache): engines, kernels.
    A relative $XDG_CACHE_HOME is ignored, as the XDG spec says: it would load a kernel library
    from wherever the command happens to run."""
    configured = Path(os.environ.get("XDG_CACHE_HOME") or "")
    home = configured if configured.is_absolute() else Path.home() / ".cache"
    return home / "bdinn" / kind


BUNDLED_MODELS = Path(__file__).resolve().parent / "models"


def files_of_model(model: str | os.PathLike | None) -> list[Path]:
    """A model file and the JSON sidecars that may sit beside it (NAME.json, NAME.plan.json); for
    None, what a command then runs, the bundled model's files (`--json` could replace them)."""
    if model is None:
        return sorted(BUNDLED_MODELS.glob("default.*"))
    model = Path(model)
    return [model, model.with_suffix(".json"), plan_sidecar(model)]  # a checkpoint's config, a plan's


def _reserve_temporary(path: Path) -> Path:
    """An empty, new temporary file beside `path` (its folder made first, and again where another
    job took it back meanwhile: jobs writing into one new folder failed after their work)."""
    gone: OSError = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
    try:
        for _ in range(100):  # bounded: a folder removed at every try would retry forever
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{_shortened(path.name)}.{secrets.token_hex(4)}.tmp")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return tmp
            except FileExistsError:
                continue
            except FileNotFoundError as exc:  # another job's check_writable took back the folder
                gone = exc
        raise gone
    except OSError as exc:
        raise _output_error(path, exc) from None


def _shortened(name: str, limit: int = 255 - len(".12345678.tmp") - 1) -> str:
    """`name`, cut to leave room for the temporary suffix within a file name's 255 bytes."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def _about(exc: OSError, tmp: Path) -> bool:
    """Whether the error concerns the file being written, not another file the writer read
    (a missing engine cache, say, is not a problem of the output's folder)."""
    return exc.filename is None or os.fsdecode(exc.filename) == str(tmp)


def _output_error(path: Path, exc: OSError) -> OutputError:
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        reason = f"{folder} is a file, not a folder"
    else:
        reason = exc.strerror or str(exc)
    return OutputError(f"{path}: cannot write there ({reason}); choose another output or check that "
                       "its folder is writable and has space")  # fmt: skip
