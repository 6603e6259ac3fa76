#!/usr/bin/env bash
# Everything bdinn needs a GPU for, in one run on a GPU machine, most important first:
#   1. build the CUDA kernels for this GPU and run the GPU tests (kernels against the reference,
#      the torch op inside the paper network at 1080p, the runtime on the GPU), printing the
#      measured errors, then a TensorRT-RTX engine built for it and run;
#   2. the banded-convolution kernel benchmark (FP16 and FP32);
#   3. bdinn-bench at 1x3x1080x1920: bundled `lite` and an untrained `paper` network, FP32 and
#      FP16, our CUDA kernels against the grid_sample formulation;
#   4. bdinn-run's video pipeline per encoder and preset, without and with the model;
#      eager PyTorch against CUDA-graph replay (how much of a frame is launch overhead), and a
#      training step of 16 x 256² patches (milliseconds, kernels launched, CPU against GPU time);
#   5. FP16 against FP32 with bdinn-eval on held-out pictures (when CLEAN_DIR is given);
#   6. benchmarks/compare_backends.py (PyTorch, ONNX Runtime, TensorRT when installed).
# Steps past BUDGET_S seconds are skipped, so a time-limited lease still returns the first ones.
# It installs nothing (GPU machines here reach no package index): it first says what is missing.
# Logs, JSON and a summary land in $OUT (default /tmp/bdinn-gpu-check); with PACK=FILE.tgz they
# are also packed into that one archive after every step (for leases that return few files).
#
#   bash benchmarks/gpu_check.sh [CLEAN_DIR]
set -u
clean_dir=${1:-}
OUT=${OUT:-/tmp/bdinn-gpu-check}
BUDGET_S=${BUDGET_S:-420}
mkdir -p "$OUT"
# Absolute now: the script works from the repository below, and relative paths named the user's.
OUT=$(cd "$OUT" && pwd)
if [[ -n $clean_dir ]]; then
  clean_dir=$(cd "$clean_dir" 2>/dev/null && pwd) || { echo "gpu_check.sh: $1: no such folder" >&2; exit 1; }
fi
if [[ -n ${PACK:-} && $PACK != /* ]]; then PACK=$PWD/$PACK; fi
export PYTHONUNBUFFERED=1
# Build for the GPU at hand only (e.g. 90-real): a minute less than every architecture.
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d .)
if [[ -z $cc ]]; then
  echo "gpu_check.sh: no NVIDIA GPU here (nvidia-smi lists none); run it on a GPU machine" >&2
  exit 1
fi
export CUDAARCHS=${CUDAARCHS:-$cc-real}
export BDINN_PLUGIN_BUILD_DIR=${BDINN_PLUGIN_BUILD_DIR:-/tmp/bdinn-plugins}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1

if ! python3 -c "import bdinn.runtime" 2>/dev/null; then
  # Not installed: serve the working tree's folders as the bdinn package.
  mkdir -p /tmp/bdinn-src/bdinn
  for part in train export plugins runtime; do ln -sfn "$repo/$part" "/tmp/bdinn-src/bdinn/$part"; done
  export PYTHONPATH=/tmp/bdinn-src${PYTHONPATH:+:$PYTHONPATH}
fi

# `$cli MODULE ARGS...`: a bdinn command without its installed console script (timeout runs it).
cli=(python3 -c 'import sys, importlib; importlib.import_module(sys.argv.pop(1)).main()')

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record the outcome
  local name=$1 limit=$2
  shift 2
  if ((SECONDS > BUDGET_S)); then
    echo "| $name | skipped: past the ${BUDGET_S} s budget |" >>"$OUT/summary.md"
    return
  fi
  local start=$SECONDS
  echo "== $name"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "| $name | exit $rc, $((SECONDS - start)) s |" >>"$OUT/summary.md"
  ((rc == 0)) || echo "$name" >>"$OUT/failed"
  pack
}

pack() {  # with PACK=FILE.tgz, everything so far in one archive
  if [[ -n ${PACK:-} ]]; then tar czf "$PACK" -C "$OUT" .; fi
}

kernel_step() {  # a step timing our kernels: without them it would time grid_sample under their name
  if [[ -f $OUT/failed ]] && grep -qx build "$OUT/failed"; then
    echo "| $1 | skipped: the kernels did not build |" >>"$OUT/summary.md"
    return
  fi
  step "$@"
}

# What the steps need, said once up front rather than as an ImportError in every step's log.
missing=$(python3 -c 'import importlib.util as u
print(" ".join(m for m in ("torch", "click", "numpy", "cv2", "PIL", "safetensors", "tqdm", "pytest",
                           "onnx", "onnxruntime", "av") if u.find_spec(m) is None))' 2>&1)
for tool in cmake nvcc; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if ! python3 -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "gpu_check.sh: no PyTorch that sees the GPU here; install a CUDA build of torch first" >&2
  exit 1
fi

rm -f "$OUT/failed"
echo "| step | outcome |" >"$OUT/summary.md"
echo "| --- | --- |" >>"$OUT/summary.md"
if [[ -n ${missing// /} ]]; then
  echo "gpu_check.sh: missing here: $missing (the steps that need them will fail)" >&2
  echo "| preflight | missing: $missing |" >>"$OUT/summary.md"
fi
step machine 60 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv;
  nvcc --version | tail -n 1; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"'
step build 300 python3 -m bdinn.plugins.build --cuda
step gpu_tests 300 python3 -m pytest -s -q -p no:cacheprovider -m gpu \
  tests/test_kernels_gpu.py tests/test_torch_op.py tests/test_runtime_gpu.py
# A TensorRT-RTX engine for this GPU (skipped where tensorrt-rtx or cuda-python is missing).
step tensorrt_tests 300 python3 -m pytest -s -q -p no:cacheprovider -m gpu tests/test_tensorrt_gpu.py
kernel_step bench_kernels_fp16 120 python3 benchmarks/bench_banded_conv.py --force --dtype float16 --json "$OUT/kernels_fp16.json"
kernel_step bench_kernels_fp32 120 python3 benchmarks/bench_banded_conv.py --force --dtype float32 --json "$OUT/kernels_fp32.json"

# An untrained `paper` network: the latency of the configuration the product targets.
step paper_checkpoint 60 python3 -c "from bdinn.train.checkpoint import save_checkpoint
from bdinn.train.network import build_model
save_checkpoint('/tmp/paper.safetensors', build_model('paper'), config_name='paper', step=0)"
default_model=$(python3 -c "from bdinn.runtime import default_model_path; print(default_model_path('torch'))")
for config in lite paper; do
  model=$default_model
  [[ $config == paper ]] && model=/tmp/paper.safetensors
  for precision in fp16 fp32; do
    kernel_step "bench_${config}_${precision}_kernels" 90 "${cli[@]}" bdinn.runtime.bench "$model" --device cuda --force \
      --precision "$precision" --json "$OUT/bench_${config}_${precision}_kernels.json"
    BDINN_KERNEL_LIBRARY=/nonexistent step "bench_${config}_${precision}_gridsample" 90 "${cli[@]}" bdinn.runtime.bench --force \
      "$model" --device cuda --precision "$precision" --json "$OUT/bench_${config}_${precision}_gridsample.json"
  done
done

# bdinn-run's video pipeline on this host, without and with the bundled model on the GPU (FP16).
step video_throughput 300 python3 benchmarks/video_throughput.py --force --frames 48 --model "$default_model" \
  --precision fp16 --json "$OUT/video_throughput.json"

step cuda_graph 240 python3 benchmarks/bench_cuda_graph.py --force --json "$OUT/cuda_graph.json"
for config in lite paper; do
  step "train_step_$config" 120 python3 benchmarks/bench_train_step.py --force --config "$config" \
    --json "$OUT/train_step_$config.json"
done

if [[ -n $clean_dir ]]; then
  for precision in fp32 fp16; do  # one process each, side by side: the metrics run on the CPU
    step "eval_$precision" 240 "${cli[@]}" bdinn.train.evaluate --clean "$clean_dir" --size 1080x1920 --force \
      --degrade q5,blur6 --no-baselines --max-change off --max-images 6 --device cuda --precision "$precision" \
      --json "$OUT/eval_$precision.json" &
  done
  wait
fi
step compare_backends 240 python3 benchmarks/compare_backends.py --force -n 5 --warmup 2 \
  --markdown "$OUT/compare_backends.md" --json "$OUT/compare_backends.json"

echo "== summary"
cat "$OUT/summary.md"
pack || echo pack >>"$OUT/failed"
if [[ -s $OUT/failed ]]; then  # the exit status says whether every step that ran passed
  echo "failed: $(paste -sd ' ' "$OUT/failed")" >&2
  exit 1
fi
