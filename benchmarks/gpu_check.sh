#!/usr/bin/env bash
# The GPU check: our training step
# at width 128, batch 128 in float32 and mixed_float16, with and without XLA and the sub-pixel
# kernels, against the PyTorch reference on CUDA (float32 and AMP), then a short robust training
# under mixed_float16. Ends within 8 minutes on one GPU; writes benchmarks/results/gpu.json.
#
#   bash benchmarks/gpu_check.sh              # the check
#   bash benchmarks/gpu_check.sh --dry-run    # the same code on the CPU, tiny (what CI runs)
#
# PYTHON: the interpreter with keras_pldt and TensorFlow (default: python3); TORCH_PYTHON: the
# one with PyTorch for the reference rows (default: $PYTHON). Other arguments go to
# benchmarks/gpu_check.py (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 KERAS_BACKEND=tensorflow TF_FORCE_GPU_ALLOW_GROWTH=true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader || true
exec timeout --kill-after=10 470 "$PYTHON" benchmarks/gpu_check.py \
    --torch-python "${TORCH_PYTHON:-$PYTHON}" "$@"
