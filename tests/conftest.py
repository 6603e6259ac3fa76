"""Shared fixtures: real banded/clean pairs made from the bundled pictures."""

import fcntl
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bdinn.runtime.imageio import from_float, read_image, to_float, write_image

# One thread per xdist worker: `-n auto` starts a worker per core, and PyTorch's and ONNX Runtime's
# pools of a thread per core in each worker spun against each other (on 2 cores the suite took
# 12 min with them, 10 without). Set before any test imports torch; processes the tests start
# inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("BDINN_ORT_THREADS", "1")

DATA = Path(__file__).parent / "data"
BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
TASKS = Path("/proc/self/task")


@pytest.fixture(autouse=True)
def normal_scheduling() -> None:
    """Put every thread of the test process back on the normal time-sharing scheduler.

    On the sandboxed machines this project is developed and tested on, the pytest process's main
    thread was seen switched to SCHED_FIFO priority 99 from outside mid-run (so were the threads
    it started later). Equal-priority FIFO threads are never time-sliced: spinning OpenMP threads
    then starve the threads they wait for, which slowed the suite twofold and once hung it.
    """
    if not TASKS.is_dir() or not hasattr(os, "sched_setscheduler"):
        return
    for task in TASKS.iterdir():
        try:
            if os.sched_getscheduler(int(task.name)) != os.SCHED_OTHER:
                os.sched_setscheduler(int(task.name), os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass  # the thread ended meanwhile, or the policy is not ours to change


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal gives it, whatever started pytest: run as `cmd &` from a script, SIGINT
    starts ignored (Python then installs no Ctrl-C handler, and children inherit the ignoring), and
    the tests of Ctrl-C, and the processes they start, would not see the signals they send."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def models_are_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Debander a test opens is closed when it ends: a PyTorch model's worker thread lives
    until the garbage collector finds it, and a later test checking for leftover threads failed."""
    from bdinn.runtime.debander import Debander

    opened: list[Debander] = []
    open_model = Debander.open.__func__

    def open_and_keep(cls: type[Debander], *args: object, **kwargs: object) -> Debander:
        opened.append(open_model(cls, *args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(Debander, "open", classmethod(open_and_keep))
    yield
    for deband in opened:
        deband.close()


@pytest.fixture(scope="session")
def paired_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """The bundled pictures quantised to 4 bits: (banded_dir, clean_dir), matched by name."""
    from bdinn.train.degrade import reduce_bit_depth

    root = tmp_path_factory.mktemp("pairs")
    for path in sorted(DATA.glob("*.png")):
        clean = read_image(path)
        write_image(root / "clean" / path.name, clean)
        write_image(root / "banded" / path.name, from_float(reduce_bit_depth(to_float(clean), 4), 8))
    return root / "banded", root / "clean"


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """Loads benchmarks/NAME.py as a module: the benchmarks are scripts, not a package."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def run_benchmark() -> Callable[..., subprocess.CompletedProcess]:
    """Runs `python benchmarks/NAME.py ARGS...` as a user would: text output, 5 minutes at most."""

    def run(name: str, *args: object) -> subprocess.CompletedProcess:
        command = [sys.executable, str(BENCHMARKS / f"{name}.py"), *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    return run


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A short MP4 of moving gradients with sound (video_sources.make_video), for the video tests."""
    pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")
    from video_sources import make_video

    return make_video(tmp_path_factory.mktemp("video") / "source.mp4")


@pytest.fixture(scope="session")
def made_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable[[Path], object]], Path]:
    """A folder filled once per test run and shared by every xdist worker: a module fixture's
    exports (tens of seconds each) were otherwise repeated in each worker that ran its tests."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one run's workers share it

    def get(name: str, fill: Callable[[Path], object]) -> Path:
        folder = root / f"made-once-{name}"
        with open(root / f"made-once-{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for the first, then take its files
            if not (folder / ".filled").exists():
                shutil.rmtree(folder, ignore_errors=True)  # what a failed fill left
                folder.mkdir()
                fill(folder)
                (folder / ".filled").touch()
        return folder

    return get
