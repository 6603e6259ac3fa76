"""Stand-ins for native modules, for tests that run without torch too (the Python 3.10 CI leg)."""

from pathlib import Path


def signalled_in_import(folder: Path, module: str) -> Path:
    """A stand-in for a native module (ONNX Runtime, TensorRT) whose import gets a SIGTERM, and
    which does with the handler's exception what their native initialisation does: turns it into
    ImportError. Returns the folder to put on PYTHONPATH."""
    stand_in = folder / "modules" / module
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text(
        "import os, signal, time\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.5)\n"
        "except BaseException as exc:\n"
        "    raise ImportError('initialization failed') from exc\n"
        "__version__ = '0'\n"
    )
    return stand_in.parent
