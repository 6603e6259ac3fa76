"""The CPU build of the CUDA kernels' maths against the PyTorch reference, and the nvcc build.

The stress cases here are reused by test_kernels_gpu.py.
"""

import ctypes
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bdinn.plugins.build import STAMP, BuildError, _tools, build_libraries, library_problem
from bdinn.plugins.cpu_reference import banded_deform_conv_cpu, load_cpu_library
from bdinn.plugins.kernels import KernelLibraryError, load_kernels
from bdinn.train.network import activate_geometry
from bdinn.train.ops import banded_deform_conv_reference

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
FP32_TOLERANCE = 1e-5  # max abs error / max abs reference output
CUDA_ARCHS = {75, 80, 86, 89, 90, 100, 120}
CUDA_13_ARCHS = {103, 110}  # B300, Jetson Thor: built by CUDA 13 and newer
PTX_ARCHS = {120}
C_ABI = ("bdinn_banded_deform_conv_forward", "bdinn_banded_deform_conv_forward_algo", "bdinn_error_string")


# --------------------------------------------------------------------------------------------
# Stress cases: (x, geometry, weight, bias, dilation), float32, N = 2.
# --------------------------------------------------------------------------------------------


def _tensors(gen, n, c, h, w, o, kernel, bias=True):
    x = torch.randn(n, c, h, w, generator=gen)
    weight = torch.randn(o, c, *kernel, generator=gen)
    b = torch.randn(o, generator=gen) if bias else None
    return x, weight, b


def random_geometry(gen, n, h, w, spread=2.0):
    return activate_geometry(spread * torch.randn(n, 4, h, w, generator=gen))


def rotation_geometry(gen, n, h, w):
    """Angles over the whole circle, the first row exactly +pi, the second exactly -pi."""
    theta = (2 * torch.rand(n, h, w, generator=gen) - 1) * math.pi
    theta[:, 0], theta[:, 1] = math.pi, -math.pi
    sx = 0.5 + 2 * torch.rand(n, h, w, generator=gen)
    sy = 0.5 + 2 * torch.rand(n, h, w, generator=gen)
    return torch.stack((torch.cos(theta), torch.sin(theta), sx, sy), dim=1)


def bound_geometry(gen, n, h, w):
    """Stretches and scales at the activation's bounds, in every combination, any rotation."""
    choices = torch.tensor([0.15, 0.31, 3.0, 9.0])
    sx = choices[torch.randint(0, 4, (n, h, w), generator=gen)]
    sy = choices[torch.randint(0, 4, (n, h, w), generator=gen)]
    theta = (2 * torch.rand(n, h, w, generator=gen) - 1) * math.pi
    return torch.stack((torch.cos(theta), torch.sin(theta), sx, sy), dim=1)


def far_geometry(gen, n, h, w, scales=(1e3, 3e4, 6e4)):
    """Every kernel point but the centre lands far outside the image (scales finite in FP16)."""
    g = random_geometry(gen, n, h, w)
    scale = torch.tensor(scales)[torch.randint(0, len(scales), (n, h, w), generator=gen)]
    g[:, 2] = scale
    g[:, 3] = scale
    return g


HUGE_SCALES = (1e4, 1e9, 1e30)  # beyond int32 pixel indices and float16 range


def quantised_geometry(gen, n, h, w):
    """Random geometry on a 1/64 grid: every sampling coordinate below 4096 is exact in float32
    (and keeps 12 fractional bits), so float32 maths must match float64 to rounding of the sums."""
    return torch.round(random_geometry(gen, n, h, w) * 64) / 64


def make_case(name: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    if name == "random_3x5":
        x, w, b = _tensors(gen, 2, 5, 17, 23, 7, (3, 5))
        return x, random_geometry(gen, 2, 17, 23), w, b, (1, 1)
    if name == "rotations_pi":
        x, w, b = _tensors(gen, 2, 6, 15, 21, 5, (3, 5))
        return x, rotation_geometry(gen, 2, 15, 21), w, b, (1, 1)
    if name == "stretch_bounds":
        x, w, b = _tensors(gen, 2, 6, 19, 25, 5, (3, 5))
        return x, bound_geometry(gen, 2, 19, 25), w, b, (1, 1)
    if name == "far_outside":
        x, w, b = _tensors(gen, 2, 6, 11, 13, 5, (3, 5))
        return x, far_geometry(gen, 2, 11, 13), w, b, (1, 1)
    if name == "many_channels_no_bias":  # several 32-channel chunks and output tiles on the GPU
        x, w, b = _tensors(gen, 2, 70, 9, 13, 67, (3, 5), bias=False)
        return x, random_geometry(gen, 2, 9, 13), w, b, (1, 1)
    if name == "wide_exact":
        x, w, b = _tensors(gen, 2, 4, 5, 2304, 3, (3, 5))
        return x, quantised_geometry(gen, 2, 5, 2304), w, b, (1, 1)
    if name == "wide_random":
        x, w, b = _tensors(gen, 2, 4, 5, 2304, 3, (3, 5))
        return x, random_geometry(gen, 2, 5, 2304), w, b, (1, 1)
    if name.startswith("shape_"):  # shape_HxW
        h, w_ = map(int, name[len("shape_") :].split("x"))
        x, w, b = _tensors(gen, 2, 3, h, w_, 4, (3, 5))
        return x, random_geometry(gen, 2, h, w_), w, b, (1, 1)
    if name.startswith("kernel_"):  # kernel_KHxKW_dDHxDW
        k, d = name[len("kernel_") :].split("_d")
        kernel = tuple(map(int, k.split("x")))
        dilation = tuple(map(int, d.split("x")))
        x, w, b = _tensors(gen, 2, 6, 13, 19, 5, kernel)
        return x, random_geometry(gen, 2, 13, 19), w, b, dilation
    raise KeyError(name)


KERNEL_CASES = [f"kernel_{k}_d{d}" for k in ("3x5", "5x3", "3x3", "1x1") for d in ("1x1", "2x1", "1x3")]
SHAPE_CASES = ["shape_1x1", "shape_1x9", "shape_7x1", "shape_5x9", "shape_33x65"]
EXACT_CASES = [
    "random_3x5",
    "rotations_pi",
    "stretch_bounds",
    "far_outside",
    "many_channels_no_bias",
    "wide_exact",
    *KERNEL_CASES,
    *SHAPE_CASES,
]


def reference64(x, geometry, weight, bias, dilation) -> np.ndarray:
    """The PyTorch reference in float64 on exactly the given values."""
    b = None if bias is None else bias.double()
    out = banded_deform_conv_reference(x.double(), geometry.double(), weight.double(), b, dilation)
    return out.cpu().numpy()


def relative_error(got, ref) -> float:
    return float(np.abs(np.asarray(got, np.float64) - ref).max() / np.abs(ref).max())


# --------------------------------------------------------------------------------------------
# The CPU library.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cpu_library(tmp_path_factory) -> Path:
    libs = build_libraries(tmp_path_factory.mktemp("plugins-cpu"), cuda=False, source_dir=PLUGINS)
    assert set(libs) == {"cpu"}
    return libs["cpu"]


def run_cpu(library, x, geometry, weight, bias, dilation):
    b = None if bias is None else bias.numpy()
    return banded_deform_conv_cpu(x.numpy(), geometry.numpy(), weight.numpy(), b, dilation, library=library)


@pytest.mark.parametrize("case", EXACT_CASES)
def test_cpu_build_matches_reference(cpu_library, case):
    x, g, w, b, dilation = make_case(case)
    got = run_cpu(cpu_library, x, g, w, b, dilation)
    ref = reference64(x, g, w, b, dilation)
    assert got.shape == ref.shape == (x.shape[0], w.shape[0], *x.shape[2:])
    err = relative_error(got, ref)
    assert err <= FP32_TOLERANCE, f"{case}: max error {err:.2e} of the output scale"


def huge_case():
    """Offsets up to 1e30 pixels, which no integer type holds: only the centre tap stays inside."""
    x, _, w, b, dilation = make_case("far_outside")
    g = far_geometry(torch.Generator().manual_seed(5), *x.shape[:1], *x.shape[2:], scales=HUGE_SCALES)
    centre = torch.einsum("oc,nchw->nohw", w[:, :, 1, 2].double(), x.double()) + b.double().view(1, -1, 1, 1)
    return (x, g, w, b, dilation), centre.numpy()


def test_huge_offsets_leave_the_centre_tap(cpu_library):
    case, expected = huge_case()
    assert relative_error(run_cpu(cpu_library, *case), expected) <= FP32_TOLERANCE


def test_wide_map_no_worse_than_float32_reference(cpu_library):
    """Coordinates above 2048 with arbitrary geometry: float32 coordinates are 2.4e-4 px apart there,
    so neither implementation can meet 1e-5; the kernel must be at least as accurate as the
    float32 PyTorch reference (it rounds the coordinates once, the reference twice)."""
    x, g, w, b, dilation = make_case("wide_random")
    ref = reference64(x, g, w, b, dilation)
    got = run_cpu(cpu_library, x, g, w, b, dilation)
    ref32 = banded_deform_conv_reference(x, g, w, b, dilation).double().numpy()
    err, err32 = relative_error(got, ref), relative_error(ref32, ref)
    assert err <= err32, f"kernel {err:.2e} vs float32 reference {err32:.2e}"
    assert err < 1e-3


def test_c_abi_rejects_bad_arguments(cpu_library):
    lib = load_cpu_library(cpu_library)
    buf = (ctypes.c_float * 64)()
    p = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
    good = dict(n=1, c=1, h=2, w=2, o=1, kh=3, kw=3, dil_h=1, dil_w=1)

    def call(pointers=(p, p, p, None, p), **changes):
        args = {**good, **changes}
        return lib.bdinn_banded_deform_conv_forward_cpu(*pointers, *args.values())

    assert call() == 0
    assert call(pointers=(p, None, p, None, p)) == 3
    assert call(h=0) == 4
    assert call(o=-1) == 4
    assert call(kw=4) == 5
    assert call(dil_h=0) == 6
    assert call(n=70000, h=200, w=200) == 7
    assert call(n=126, h=341, w=49981) == 7  # 2^31 - 2 pixels: no tile of 128 to spare
    assert call(n=2**30, h=2**23, w=2**23) == 7  # 2^76 pixels: the product wrapped to 0 in int64
    assert call(dil_w=2**24 - 2) == 0 and call(dil_w=2**24 - 1) == 7  # the kernel reaching 2^24 pixels
    assert call(c=2**31 - 1, kh=1, kw=1) == 7  # the kernels' channel loop (c0 += 32) would wrap
    assert call(c=(2**31 - 1) // 9) == 7  # C x kh x kw within 2^31, but no chunk of channels to spare
    assert lib.bdinn_cpu_error_string(5) == b"kernel sizes must be odd"


def test_c_abi_reports_host_memory_it_cannot_get(cpu_library, tmp_path):
    """A column buffer that cannot be allocated is a status, not an uncaught C++ exception that
    ends the process calling through ctypes (here it is capped at 1 GiB of address space)."""
    script = f"""
import ctypes, resource
from bdinn.plugins.cpu_reference import load_cpu_library
from pathlib import Path
lib = load_cpu_library(Path({str(cpu_library)!r}))
buf = (ctypes.c_float * 16)()
p = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
status = lib.bdinn_banded_deform_conv_forward_cpu(p, p, p, None, p, 1, 80_000_000, 1, 1, 1, 3, 5, 1, 1)
print(status, lib.bdinn_cpu_error_string(status).decode())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "8 out of host memory\n"), done.stderr


def test_wrapper_reports_errors(cpu_library):
    x = np.zeros((1, 2, 4, 4), np.float32)
    g = np.zeros((1, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="kernel sizes must be odd"):
        banded_deform_conv_cpu(x, g, np.zeros((3, 2, 2, 3), np.float32), library=cpu_library)
    with pytest.raises(ValueError, match="geometry must be"):
        banded_deform_conv_cpu(x, g[:, :3], np.zeros((3, 2, 3, 3), np.float32), library=cpu_library)
    weight = np.zeros((3, 2, 3, 3), np.float32)
    for dilation in ((2**32 + 1, 1), (1, -(2**32) + 1)):  # ctypes kept the low 32 bits: dilation 1
        with pytest.raises(ValueError, match=r"dilation_\w -?\d+ does not fit the kernels' 32-bit int"):
            banded_deform_conv_cpu(x, g, weight, None, dilation, library=cpu_library)


def test_the_build_command_names_where_its_folder_came_from(tmp_path):
    """A BDINN_PLUGIN_BUILD_DIR naming a file said only 'cannot build there', naming neither the
    variable nor --build-dir; and -h was 'No such option'."""
    (tmp_path / "a.png").write_bytes(b"")
    command = [sys.executable, "-m", "bdinn.plugins.build", "--no-cuda"]
    env = {**os.environ, "BDINN_PLUGIN_BUILD_DIR": str(tmp_path / "a.png")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "(the folder BDINN_PLUGIN_BUILD_DIR names)" in done.stderr, done.stderr
    done = subprocess.run([*command, "--build-dir", str(tmp_path / "a.png")], capture_output=True, text=True)
    assert done.returncode == 2 and "Invalid value for '--build-dir'" in done.stderr, done.stderr
    assert subprocess.run([*command[:3], "-h"], capture_output=True, text=True).stdout.startswith("Usage:")


def test_a_damaged_build_record_is_built_over(tmp_path):
    """A build killed while writing its record (or a full disk) left it empty: every later build
    and every load was a JSONDecodeError traceback until the user found and deleted the file."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for damage in ("[]", ""):
        (folder / STAMP).write_text(damage)
        assert library_problem(folder, "cpu", PLUGINS) is not None
        assert set(build_libraries(folder, cuda=False, source_dir=PLUGINS)) == {"cpu"}
        assert library_problem(folder, "cpu", PLUGINS) is None
        assert "fingerprint" in json.loads((folder / STAMP).read_text())


@pytest.mark.slow
def test_nvcc_installed_after_a_build_is_found(tmp_path, monkeypatch):
    """A build folder first configured without nvcc kept CMake's "no CUDA compiler" for good: the
    CUDA library was never built, and --cuda said nvcc was missing with nvcc on PATH. So did a
    folder whose first build failed for want of it (--cuda), which left no stamp."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH: cannot compile the CUDA kernels")
    hidden = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(Path(nvcc).parent))
    monkeypatch.setenv("CUDAARCHS", "75-real")  # one architecture: the point is that it builds
    monkeypatch.setenv("PATH", hidden)
    monkeypatch.delenv("CUDACXX", raising=False)
    assert shutil.which("nvcc") is None
    assert set(build_libraries(tmp_path / "a", source_dir=PLUGINS)) == {"cpu"}
    with pytest.raises(BuildError, match="no CUDA compiler"):
        build_libraries(tmp_path / "b", cuda=True, source_dir=PLUGINS)
    monkeypatch.setenv("PATH", os.environ["PATH"] + os.pathsep + str(Path(nvcc).parent))
    assert set(build_libraries(tmp_path / "a", source_dir=PLUGINS)) == {"cpu", "cuda"}
    assert set(build_libraries(tmp_path / "b", cuda=True, source_dir=PLUGINS)) == {"cpu", "cuda"}


def test_a_cuda_compiler_upgraded_in_place_is_told_apart(tmp_path, monkeypatch):
    """Only the last line of `--version` was kept: nvcc's release, but clang's install folder, so a
    clang upgraded in place reused kernels built by the old one."""
    clang = tmp_path / "clang++"
    monkeypatch.setenv("CUDACXX", str(clang))
    said = []
    for version in ("17.0.6", "18.1.8"):
        clang.write_text(f"#!/bin/sh\necho 'clang version {version}'\necho 'InstalledDir: /usr/bin'\n")
        clang.chmod(0o755)
        said.append(_tools()["cuda_compiler_version"])
    assert said == [f"clang version {v}\nInstalledDir: /usr/bin" for v in ("17.0.6", "18.1.8")]


@pytest.mark.slow
def test_cudaarchs_given_when_cmake_runs_again_in_a_folder(tmp_path):
    """CMake reads $CUDAARCHS only when it first finds the compiler: given to a folder configured
    without it, the architectures were left empty and CMake failed to generate."""
    if shutil.which("nvcc") is None or shutil.which("cmake") is None:
        pytest.skip("nvcc or cmake not found on PATH: cannot configure the CUDA kernels")
    env = {k: v for k, v in os.environ.items() if k != "CUDAARCHS"}
    command = ["cmake", "-S", str(PLUGINS), "-B", str(tmp_path)]
    for extra in ({}, {"CUDAARCHS": "89-real"}):
        done = subprocess.run(command, capture_output=True, text=True, env=env | extra, timeout=300)
        assert done.returncode == 0, done.stderr
    flags = (tmp_path / "CMakeFiles" / "bdinn_bdconv_kernels.dir" / "flags.make").read_text()
    assert re.findall(r"arch=compute_\d+,code=\S+", flags) == ["arch=compute_89,code=[sm_89]"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("release", "unknown", "targets"),
    [("12.4", "100|103|110|120", [75, 80, 86, 89, 90, "compute_90"]),
     ("11.4", "89|90|100|103|110|120", [75, 80, 86, "compute_86"])],
)  # fmt: skip
def test_an_older_nvcc_gets_the_architectures_it_knows(tmp_path, release, unknown, targets):
    """The default list named Blackwell whatever the compiler: CMake's compiler check failed on any
    nvcc before 12.8, and the CPU library went down with it. The nvcc here is the installed one
    behind a front that reports an older release and, as that release does, refuses what it lacks."""
    nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found (neither on PATH nor in CUDACXX): cannot configure the CUDA build")
    older = tmp_path / "nvcc"
    older.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *--version*) echo "Cuda compilation tools, release {release}"; exit 0;; esac\n'
        f'for a in "$@"; do case "$a" in *_{unknown.replace("|", "*|*_")}*) '
        'echo "nvcc fatal   : Unsupported gpu architecture" >&2; exit 1;; esac; done\n'
        f'exec {nvcc} "$@"\n'
    )
    older.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDAARCHS"} | {"CUDACXX": str(older)}
    done = subprocess.run(
        ["cmake", "-S", str(PLUGINS), "-B", str(tmp_path / "build"), "-DBDINN_REQUIRE_CUDA=ON"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    flags = (tmp_path / "build" / "CMakeFiles" / "bdinn_bdconv_kernels.dir" / "flags.make").read_text()
    built = re.findall(r"arch=compute_\d+,code=\[(\w+)\]", flags)
    assert built == [f"sm_{t}" if isinstance(t, int) else t for t in targets]


@pytest.mark.slow
def test_a_kernel_library_from_other_sources_is_not_loaded(tmp_path, monkeypatch):
    """A bdinn upgrade changed the sources under a CUDA library built before, and a build without
    CUDA left an earlier CUDA library in place: the ops, the Python plugin and bdinn-export loaded
    it anyway, running old kernels or another C ABI. The other sources here are a copy of the
    plugin sources with one line added."""
    if shutil.which("nvcc") is None and not os.environ.get("CUDACXX"):
        pytest.skip("nvcc not found (neither on PATH nor in CUDACXX): cannot compile the CUDA kernels")
    build, other = tmp_path / "build", tmp_path / "sources"
    shutil.copytree(PLUGINS, other, ignore=shutil.ignore_patterns("__pycache__"))
    kernel = other / "csrc" / "banded_deform_conv.cu"
    kernel.write_text(kernel.read_text() + "// an older or newer bdinn\n")
    monkeypatch.setenv("CUDAARCHS", "75-real")  # one architecture: the point is which sources
    monkeypatch.setenv("BDINN_PLUGIN_BUILD_DIR", str(build))
    monkeypatch.delenv("BDINN_KERNEL_LIBRARY", raising=False)
    assert set(build_libraries(build, cuda=True, source_dir=other)) == {"cpu", "cuda"}
    assert library_problem(build, "cuda", other) is None
    assert library_problem(build, "cuda").startswith("built from other kernel sources")
    load_kernels.cache_clear()
    with pytest.raises(KernelLibraryError, match=r"libbdinn_bdconv\.so: built from other kernel sources"):
        load_kernels()
    load_kernels.cache_clear()

    shutil.copy2(PLUGINS / "csrc" / "banded_deform_conv.cu", kernel)  # this bdinn's, CPU alone
    assert set(build_libraries(build, cuda=False, source_dir=other)) == {"cpu"}
    assert (build / "libbdinn_bdconv.so").is_file()  # left in place, and known to be older
    assert library_problem(build, "cpu") is None and library_problem(build, "cuda") is not None
    with pytest.raises(KernelLibraryError, match="built from other kernel sources"):
        load_kernels()
    load_kernels.cache_clear()


def test_a_build_folder_inside_the_sources_is_not_taken_for_sources(tmp_path, monkeypatch):
    """A hand-run `cmake -B plugins/build` fills the sources with CMake's own .cpp and .cmake
    files: they changed the digest, and a good CUDA library was refused as built from other
    sources. A library with no build record beside it says so."""
    from bdinn.plugins.build import source_digest

    sources = tmp_path / "sources"
    shutil.copytree(PLUGINS, sources, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_digest(sources)
    configured = subprocess.run(
        ["cmake", "-S", str(sources), "-B", str(sources / "build"), "-DBDINN_WITH_CUDA=OFF"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert configured.returncode == 0, configured.stderr[-2000:]
    assert list((sources / "build").rglob("*.cpp")) and list((sources / "build").rglob("*.cmake"))
    assert source_digest(sources) == before
    (sources / "csrc" / "banded_deform_conv.cu").write_text("// changed\n")
    assert source_digest(sources) != before

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libbdinn_bdconv.so").write_bytes(b"")
    monkeypatch.setenv("BDINN_PLUGIN_BUILD_DIR", str(tmp_path / "lib"))
    monkeypatch.delenv("BDINN_KERNEL_LIBRARY", raising=False)
    load_kernels.cache_clear()
    with pytest.raises(KernelLibraryError, match=r"so: no build record beside it \(not built by `python -m"):
        load_kernels()
    load_kernels.cache_clear()


def test_build_is_cached(cpu_library):
    before = cpu_library.stat().st_mtime_ns
    libs = build_libraries(cpu_library.parent, cuda=False, source_dir=PLUGINS)
    assert libs == {"cpu": cpu_library}
    assert cpu_library.stat().st_mtime_ns == before


# --------------------------------------------------------------------------------------------
# The CUDA library: compiled here for every target architecture, never run.
# --------------------------------------------------------------------------------------------


def fatbin_targets(library: Path) -> set[tuple[str, int]]:
    """(kind, sm) of every entry in the library's CUDA fat binaries: kind "elf" (SASS) or "ptx"."""
    data = library.read_bytes()
    targets = set()
    start = data.find(struct.pack("<I", 0xBA55ED50))
    while start >= 0:
        _, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, start)
        entry, end = start + header_size, start + header_size + fat_size
        while entry < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHII", data, entry)
            (sm,) = struct.unpack_from("<I", data, entry + 28)
            targets.add(({1: "ptx", 2: "elf"}[kind], sm))
            entry += entry_header + payload
        start = data.find(struct.pack("<I", 0xBA55ED50), end)
    return targets


@pytest.mark.slow
def test_cuda_library_compiles(tmp_path):
    if shutil.which("nvcc") is None and not os.environ.get("CUDACXX"):
        pytest.skip("nvcc not found (neither on PATH nor in CUDACXX): cannot compile the CUDA kernels")
    libs = build_libraries(tmp_path, cuda=True, source_dir=PLUGINS)
    exported = subprocess.run(
        ["nm", "-D", "--defined-only", str(libs["cuda"])], capture_output=True, text=True, check=True
    ).stdout.split()
    for symbol in C_ABI:
        assert symbol in exported
    assert not [s for s in exported if s.startswith("_Z")], "C++ symbols leak from the library"
    nvcc = subprocess.run([os.environ.get("CUDACXX") or "nvcc", "--version"], capture_output=True, text=True)
    cuda_13 = int(nvcc.stdout.split("release ")[1].split(".")[0]) >= 13
    expected = {("elf", sm) for sm in CUDA_ARCHS | (CUDA_13_ARCHS if cuda_13 else set())}
    assert fatbin_targets(libs["cuda"]) == expected | {("ptx", sm) for sm in PTX_ARCHS}
    assert library_problem(tmp_path, "cuda") is None and library_problem(tmp_path, "cpu") is None
    # CMake run again in the same folder (sources changed) keeps every target: it once took the
    # compiler's default, cached by the first run, for the user's choice and built sm_75 alone.
    (tmp_path / STAMP).unlink()
    again = build_libraries(tmp_path, cuda=True, source_dir=PLUGINS)
    assert fatbin_targets(again["cuda"]) == expected | {("ptx", sm) for sm in PTX_ARCHS}
