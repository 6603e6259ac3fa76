"""ONNX files that are not bdinn graphs, given to the runtime: each is one line naming the file,
never a traceback and never a picture of the wrong size written as if all were well."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from bdinn.runtime import BackendError, Debander  # noqa: E402

FRAME = np.zeros((64, 64, 3), np.uint8)


def save(path, nodes, outputs=("debanded",), initializers=()):
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
    results = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs]
    graph = helper.make_graph(nodes, "g", [image], results, initializer=list(initializers))
    # IR version 9 goes with opset 19 (what bdinn exports); onnx's newest would be too new for the
    # ONNX Runtime that Python 3.10 still gets (1.23 reads up to IR 11).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    onnx.save(model, path)
    return path


def test_a_graph_that_changes_the_frame_size_is_refused(tmp_path):
    """A Slice down to 8 rows: a 64 x 64 picture came out 64 x 8, exit status 0."""
    ints = lambda *v: helper.make_tensor(f"c{v}", TensorProto.INT64, [len(v)], v)  # noqa: E731
    starts, ends, axes = ints(0), ints(8), ints(2)
    node = helper.make_node("Slice", ["image", starts.name, ends.name, axes.name], ["debanded"])
    deband = Debander.open(save(tmp_path / "half.onnx", [node], initializers=[starts, ends, axes]))
    with pytest.raises(BackendError) as info:
        deband(FRAME)
    assert str(info.value) == (
        f"{tmp_path / 'half.onnx'}: not a bdinn graph (it made float32 [1, 3, 8, 64] of float32 "
        "[1, 3, 64, 64]; a debanded frame has its input's shape)"
    )


def test_a_graph_with_two_outputs_is_refused_when_opened(tmp_path):
    nodes = [helper.make_node("Identity", ["image"], [name]) for name in ("debanded", "extra")]
    with pytest.raises(BackendError, match=r"two\.onnx: not a bdinn graph \(1 inputs and 2 outputs"):
        Debander.open(save(tmp_path / "two.onnx", nodes, outputs=("debanded", "extra")))


def test_a_graph_that_fails_as_it_runs_is_one_line(tmp_path):
    """A fixed Reshape that only some sizes fit: ONNX Runtime's error was a traceback."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 3, 32, 32])
    node = helper.make_node("Reshape", ["image", "shape"], ["debanded"])
    deband = Debander.open(save(tmp_path / "fixed.onnx", [node], initializers=[shape]))
    with pytest.raises(BackendError) as info:
        deband(FRAME)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'fixed.onnx'}: ONNX Runtime failed to run the model (")
    assert "\n" not in message


def test_a_graph_of_one_frame_size_says_which_size(tmp_path):
    """ONNX Runtime's lines after the first say what the graph takes; the first alone ended at
    'invalid dimensions for input: image for the following indices'."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])
    result = helper.make_tensor_value_info("debanded", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["debanded"])], "g", [image], [result])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    onnx.save(model, tmp_path / "f.onnx")
    with pytest.raises(BackendError) as info:
        Debander.open(tmp_path / "f.onnx")(FRAME)
    message = str(info.value)
    assert "Got: 64 Expected: 32" in message and "\n" not in message


def test_bdinn_run_names_the_input_and_prints_one_line_per_failure(tmp_path):
    """ONNX Runtime printed its own two coloured lines before bdinn's, and with several inputs the
    error named the model but not the picture it failed on."""
    import subprocess
    import sys

    from bdinn.runtime.imageio import write_image

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 3, 32, 32])
    model = save(
        tmp_path / "fixed.onnx",
        [helper.make_node("Reshape", ["image", "shape"], ["debanded"])],
        initializers=[shape],
    )
    write_image(tmp_path / "a32.png", np.zeros((32, 32, 3), np.uint8))
    write_image(tmp_path / "b48.png", np.zeros((48, 48, 3), np.uint8))
    code = "from bdinn.runtime.run_cli import main; main()"
    args = [model, tmp_path / "a32.png", tmp_path / "b48.png", "-o", tmp_path / "out", "-q"]
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1
    failed, summary = done.stderr.splitlines()
    assert failed.startswith(f"bdinn-run: error: {tmp_path / 'b48.png'}: {model}: ONNX Runtime failed to run")
    assert summary == "bdinn-run: error: 1 of 2 inputs failed (see above)"


@pytest.mark.parametrize("max_change", [2.0, None])
def test_a_graph_that_outputs_nan_leaves_the_input_there_and_says_so(tmp_path, max_change):
    """np.clip keeps NaN, and the caller's 8-bit cast made it black: 255 levels off under a limit of 2."""
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [1], [float("nan")])
    node = helper.make_node("Mul", ["image", "nan"], ["debanded"])
    deband = Debander.open(save(tmp_path / "nan.onnx", [node], initializers=[nan]), max_change=max_change)
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    with pytest.warns(UserWarning, match=r"the model gave 12288 NaN values; the input's stand there") as said:
        out = deband(frame)
    assert np.array_equal(out, frame)
    with pytest.warns(UserWarning, match="NaN values") as said_too:
        deband.infer(frame.transpose(2, 0, 1)[None] / np.float32(255))
    # on the caller's line, as every other warning of the Debander: it named debander.py
    assert [w.filename for w in [*said, *said_too]] == [__file__] * 2
    deband.close()


def test_onnx_runtime_out_of_memory_is_a_memory_error_with_advice(tmp_path):
    """ONNX Runtime's allocator failing was "ONNX Runtime failed to run the model" and 400
    characters of its arena's words, where PyTorch's is "not enough memory (try --tile ...)"."""
    import subprocess

    from stand_ins import greedy_onnx, memory_limited

    from bdinn.runtime.imageio import write_image

    model = greedy_onnx(tmp_path / "greedy.onnx")
    write_image(tmp_path / "a.png", np.zeros((128, 256, 3), np.uint8))
    api = memory_limited(
        "import numpy as np; from bdinn.runtime import Debander; "
        f"Debander.open({str(model)!r}, max_change=None)(np.zeros((64, 64, 3), np.uint8))"
    )
    said = subprocess.run(api, capture_output=True, text=True, timeout=300).stderr.strip().splitlines()
    assert said[-1] == "MemoryError: ONNX Runtime could not allocate a 64x64 tile's memory"
    for tile, advice in (  # half the tile that failed: the picture's own where it ran whole
        ([], "try --tile 128"),
        (["--tile", "64"], "try --tile 32"),
        (["--tile", "32"], "even --tile 32 needs more than this machine has free"),
    ):
        args = [model, tmp_path / "a.png", "-o", tmp_path / "out.png", "-q", *tile]
        command = memory_limited("from bdinn.runtime.run_cli import main; main()") + [str(a) for a in args]
        cli = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert cli.returncode == 1
        assert cli.stderr.splitlines() == [
            f"bdinn-run: error: {tmp_path / 'a.png'}: not enough memory for it ({advice})"
        ]
    assert not (tmp_path / "out.png").exists()
