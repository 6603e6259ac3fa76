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

from ..runtime.files import user_cache

SOURCE_DIR = Path(__file__).resolve().parent
MANIFEST = "bdinn_libraries.txt"
STAMP = "bdinn_build_stamp.json"
LOCK = "bdinn_build.lock"
SOURCE_SUFFIXES = {".c", ".cc", ".cpp", ".cu", ".cuh", ".h", ".hpp", ".cmake"}


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
    """The compilers CMake would pick: its environment variables, the nvcc on PATH, and that
    nvcc's release (a CUDA upgraded in place keeps its path)."""
    tools = {name: os.environ.get(name) for name in ("CC", "CXX", "CUDACXX", "CUDAARCHS")}
    tools["nvcc"] = shutil.which("nvcc")
    nvcc = tools["CUDACXX"] or tools["nvcc"]
    try:
        said = (
            subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60) if nvcc else None
        )
    except (OSError, subprocess.TimeoutExpired):
        said = None
    tools["nvcc_release"] = said.stdout.strip().splitlines()[-1] if said and said.stdout.strip() else None
    return tools


def source_digest(source_dir: Path = SOURCE_DIR, build_dir: Path | None = None) -> str:
    """The plugin sources' content: what a built library must match to be this bdinn's."""
    digest = hashlib.sha256()
    for path in sorted(Path(source_dir).rglob("*")):
        if build_dir is not None and build_dir in path.parents:  # a build folder inside the sources
            continue
        if path.is_file() and (path.suffix in SOURCE_SUFFIXES or path.name == "CMakeLists.txt"):
            digest.update(str(path.relative_to(source_dir)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _fingerprint(sources: str, options: dict[str, str], tools: dict) -> str:
    """Everything the build output depends on: sources, options, the compilers CMake would pick."""
    return hashlib.sha256(json.dumps([sources, options, tools], sort_keys=True).encode()).hexdigest()


def built_from(build_dir: Path, name: str, source_dir: Path = SOURCE_DIR) -> bool:
    """Whether build_dir's library `name` was last built from source_dir's sources as they are.

    A build without CUDA leaves an earlier CUDA library in place, and a bdinn upgrade changes the
    sources under a library built before: loading either ran old kernels, or another C ABI.
    """
    stamp = Path(build_dir) / STAMP
    try:
        built = json.loads(stamp.read_text()).get("sources", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(built, dict) and built.get(name) == source_digest(source_dir, Path(build_dir).resolve())


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
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir / LOCK).open("w") as lock:  # two processes building one folder broke each other
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(build_dir, cuda, source_dir)


def _build(build_dir: Path, cuda: bool | None, source_dir: Path) -> dict[str, Path]:
    options, tools = _cmake_options(cuda), _tools()
    sources = source_digest(source_dir, build_dir)
    fingerprint = _fingerprint(sources, options, tools)
    stamp = build_dir / STAMP
    last = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if last.get("fingerprint") == fingerprint:
        libs = _read_manifest(build_dir)
        if all(path.is_file() for path in libs.values()):
            return libs
    if last and last.get("tools") != tools:  # last: a stamp of ours, of a build that may have failed
        # CMake keeps the compilers it found, or that it found none, in its cache: nvcc installed
        # since the last build (the default folder is the user's, for good) was never looked for.
        (build_dir / "CMakeCache.txt").unlink(missing_ok=True)

    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError("cmake not found on PATH; install CMake >= 3.20 to build the plugin libraries")
    built = last.get("sources", {}) if isinstance(last.get("sources"), dict) else {}
    # Written now: the folder is ours, whatever comes of this build.
    stamp.write_text(json.dumps({"tools": tools, "sources": built}))
    _run([cmake, "-S", str(source_dir), "-B", str(build_dir), *(f"-D{k}={v}" for k, v in options.items())])
    _run([cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 1)])
    libs = _read_manifest(build_dir)
    missing = [name for name, path in libs.items() if not path.is_file()]
    if missing or "cpu" not in libs:
        raise BuildError(f"{build_dir}: the build did not produce {missing or ['cpu']}")
    built |= dict.fromkeys(libs, sources)  # a library this build left alone keeps its own sources
    done = {"fingerprint": fingerprint, "tools": tools, "sources": built,
            "libraries": {k: str(p) for k, p in libs.items()}}  # fmt: skip
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(done))
    tmp.replace(stamp)
    return libs


@click.command()
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build folder (default: $BDINN_PLUGIN_BUILD_DIR or ~/.cache/bdinn/plugins).",
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
        raise click.ClickException(str(exc)) from None
    for name, path in libs.items():
        click.echo(f"{name}\t{path}")


if __name__ == "__main__":
    main()
