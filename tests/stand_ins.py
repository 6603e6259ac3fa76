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


MEMORY_LIMIT = "import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))"  # 4 GiB


def memory_limited(code: str) -> list[str]:
    """The command that runs Python `code` with at most MEMORY_LIMIT of address space."""
    import sys

    return [sys.executable, "-c", f"{MEMORY_LIMIT}; {code}"]


def memory_limited_script(script: Path, *args: str) -> list[str]:
    """memory_limited for `python SCRIPT ARGS...`."""
    argv = [script.name, *args]
    return memory_limited(
        f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')"
    )


def greedy_onnx(path: Path) -> Path:
    """A graph shaped as bdinn's (image [1, 3, H, W] in, 'debanded' of that shape out) that makes
    a million copies of its input first: 49 GB for a 64x64 frame, past MEMORY_LIMIT anywhere.
    IR 9 and opset 19, as bdinn exports: the ONNX Runtime of Python 3.10 reads no newer."""
    from onnx import TensorProto, helper, save

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
    debanded = helper.make_tensor_value_info("debanded", TensorProto.FLOAT, None)
    copies = helper.make_tensor("copies", TensorProto.INT64, [4], [1_000_000, 1, 1, 1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    nodes = [
        helper.make_node("Expand", ["image", "copies"], ["many"]),
        helper.make_node("ReduceMean", ["many", "axes"], ["debanded"], keepdims=1),
    ]
    graph = helper.make_graph(nodes, "greedy", [image], [debanded], initializer=[copies, axes])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9), path)
    return path
