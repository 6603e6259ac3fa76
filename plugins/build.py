"""Configure and build the plugin libraries with CMake; a second call with nothing changed is free.

`build_libraries(Path("build/plugins"))` returns {"cpu": path, "cuda": path} for what was built.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import click

from ..runtime.files import atomic_write_text, user_cache

SOURCE_DIR = Path(__file__).resolve().parent
MANIFEST = "bdinn_libraries.txt"
STAMP = "bdinn_build_stamp.json"
LOCK = "bdinn_build.lock"
SOURCE_SUFFIXES = {".c", ".cc", ".cpp", ".cu", ".cuh", ".h", ".hpp", ".cmake", ".map"}


class BuildError(RuntimeError):
    """CMake is missing, or configuring or building failed (the message carries its output)."""


def default_build_dir() -> Path:
    """$BDINN_PLUGIN_BUILD_DIR, else a folder in the user's cache."""
    if env := os.environ.get("BDINN_PLUGIN_BUILD_DIR"):
        return Path(env)
    return user_cache("plugins")


def _cmake_options(cuda: bool | None) -> dict[str, str]:
    return {
        "CMAKE_BUILD_TYPE": "Release",
        "BDINN_WITH_CUDA": "OFF" if cuda is False else "ON",
        "BDINN_REQUIRE_CUDA": "ON" if cuda else "OFF",
    }


def _tools() -> dict[str, str | None]:
    """The compilers CMake would pick: its environment variables, the nvcc on PATH, and what the
    CUDA compiler says of its version (a CUDA upgraded in place keeps its path). The whole text:
    nvcc's release is on its last line, clang's on its first."""
    tools = {name: os.environ.get(name) for name in ("CC", "CXX", "CUDACXX", "CUDAARCHS")}
    tools["nvcc"] = shutil.which("nvcc")
    nvcc = tools["CUDACXX"] or tools["nvcc"]
    try:
        said = (
            subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60) if nvcc else None
        )
    except (OSError, subprocess.TimeoutExpired):
        said = None
    tools["cuda_compiler_version"] = said.stdout.strip() if said else None
    return tools


def source_digest(source_dir: Path = SOURCE_DIR) -> str:
    """The plugin sources' content: what a built library must match to be this bdinn's."""
    source_dir = Path(source_dir)
    digest = hashlib.sha256()
    for path in sorted(source_dir.rglob("*")):
        relative = path.relative_to(source_dir)
        source = path.suffix in SOURCE_SUFFIXES or path.name == "CMakeLists.txt"
        if source and path.is_file() and not _generated(relative, source_dir):
            digest.update(str(relative).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _generated(relative: Path, source_dir: Path) -> bool:
    """Whether a file lies in a CMake build folder inside the sources (one with a CMakeCache.txt
    or CMakeFiles): its .cpp and .cmake files are CMake's, and come and go with every configure."""
    return any(
        folder.name == "CMakeFiles" or (source_dir / folder / "CMakeCache.txt").is_file()
        for folder in relative.parents
        if folder != Path(".")
    )


def _fingerprint(sources: str, options: dict[str, str], tools: dict) -> str:
    """Everything the build output depends on: sources, options, the compilers CMake would pick."""
    return hashlib.sha256(json.dumps([sources, options, tools], sort_keys=True).encode()).hexdigest()


def library_problem(build_dir: Path, name: str, source_dir: Path = SOURCE_DIR) -> str | None:
    """Why build_dir's library `name` is not this bdinn's (None: it was last built from
    source_dir's sources as they are). A build without CUDA leaves an earlier CUDA library in
    place, and a bdinn upgrade changes the sources under a library built before: loading either
    ran old kernels, or another C ABI."""
    record = _read_stamp(Path(build_dir))
    if not record:
        return "no build record beside it (not built by `python -m bdinn.plugins.build`)"
    built = record.get("sources", {})
    if not isinstance(built, dict) or built.get(name) != source_digest(source_dir):
        return "built from other kernel sources than this bdinn's (an upgrade, or a build without CUDA since)"
    return None


def _read_stamp(build_dir: Path) -> dict:
    """The folder's build record, or {} where there is none or it is damaged: a build killed
    while writing it, or a full disk, leaves it empty, and the next build must still run."""
    try:
        record = json.loads((build_dir / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_stamp(build_dir: Path, record: dict) -> None:
    """Whole or not at all: readers and the next build must never see half a record."""
    atomic_write_text(build_dir / STAMP, json.dumps(record))


def _read_manifest(build_dir: Path) -> dict[str, Path]:
    libs = {}
    for line in (build_dir / MANIFEST).read_text().splitlines():
        if "=" in line:
            name, path = line.split("=", 1)
            libs[name] = Path(path)
    return libs


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{output}")


def build_libraries(
    build_dir: Path, cuda: bool | None = None, source_dir: Path | None = None
) -> dict[str, Path]:
    """Build the plugin libraries into build_dir and return {"cpu": path[, "cuda": path]}.

    cuda: None builds the CUDA library when CMake finds a CUDA compiler, True requires it,
    False skips it. Skips CMake entirely when the sources, options and compilers are unchanged
    since the last successful build and its libraries still exist.
    source_dir: the folder holding CMakeLists.txt (default: this package's folder).
    """
    source_dir = Path(source_dir or SOURCE_DIR).resolve()
    if not (source_dir / "CMakeLists.txt").is_file():
        raise BuildError(f"{source_dir}: no CMakeLists.txt (plugin sources not installed)")
    build_dir = Path(build_dir).resolve()
    options, tools = _cmake_options(cuda), _tools()
    sources = source_digest(source_dir)
    fingerprint = _fingerprint(sources, options, tools)
    if (libs := _built_already(build_dir, fingerprint)) is not None:
        return libs  # before the lock: a prebuilt folder may be read-only
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        lock = (build_dir / LOCK).open("a")
    except OSError as exc:
        raise BuildError(
            f"{build_dir}: cannot build there ({exc.strerror}); choose another build folder"
        ) from None
    with lock:  # two processes building one folder broke each other
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs := _built_already(build_dir, fingerprint)) is not None:  # by the other, meanwhile
            return libs
        return _build(build_dir, source_dir, options, tools, sources, fingerprint)


def _built_already(build_dir: Path, fingerprint: str) -> dict[str, Path] | None:
    """The libraries of the last build, if it had this fingerprint and they are all still there."""
    if _read_stamp(build_dir).get("fingerprint") != fingerprint:
        return None
    libs = _read_manifest(build_dir)
    return libs if all(path.is_file() for path in libs.values()) else None


def _build(
    build_dir: Path, source_dir: Path, options: dict[str, str], tools: dict, sources: str, fingerprint: str
) -> dict[str, Path]:
    last = _read_stamp(build_dir)
    if last and last.get("tools") != tools:  # last: a stamp of ours, of a build that may have failed
        # CMake keeps the compilers it found, or that it found none, in its cache: nvcc installed
        # since the last build (the default folder is the user's, for good) was never looked for.
        (build_dir / "CMakeCache.txt").unlink(missing_ok=True)

    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError("cmake not found on PATH; install CMake >= 3.21 to build the plugin libraries")
    built = last.get("sources", {}) if isinstance(last.get("sources"), dict) else {}
    # Written now: the folder is ours, whatever comes of this build.
    _write_stamp(build_dir, {"tools": tools, "sources": built})
    _run([cmake, "-S", str(source_dir), "-B", str(build_dir), *(f"-D{k}={v}" for k, v in options.items())])
    _run([cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 1)])
    libs = _read_manifest(build_dir)
    missing = [name for name, path in libs.items() if not path.is_file()]
    if missing or "cpu" not in libs:
        raise BuildError(f"{build_dir}: the build did not produce {missing or ['cpu']}")
    built |= dict.fromkeys(libs, sources)  # a library this build left alone keeps its own sources
    done = {"fingerprint": fingerprint, "tools": tools, "sources": built,
            "libraries": {k: str(p) for k, p in libs.items()}}  # fmt: skip
    _write_stamp(build_dir, done)
    return libs


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build folder (default: $BDINN_PLUGIN_BUILD_DIR, else ~/.cache/bdinn/plugins or "
    "$XDG_CACHE_HOME/bdinn/plugins); the runtime loads the kernels from there too.",
)
@click.option(
    "--cuda/--no-cuda",
    default=None,
    help="Require or skip the CUDA library (default: build it if nvcc is found).",
)
def main(build_dir: Path | None, cuda: bool | None) -> None:
    """Build the BandedDeformConv2d libraries and print `name<TAB>path` for each."""
    try:
        libs = build_libraries(build_dir or default_build_dir(), cuda)
    except BuildError as exc:
        said = str(exc)
        from_env = "BDINN_PLUGIN_BUILD_DIR" if os.environ.get("BDINN_PLUGIN_BUILD_DIR") else None
        named = "--build-dir" if build_dir else from_env
        if named and "cannot build there" in said:  # the folder itself: say where it came from
            said += f" (the folder {named} names)"
        raise click.ClickException(said) from None
    for name, path in libs.items():
        click.echo(f"{name}\t{path}")


if __name__ == "__main__":
    main()
