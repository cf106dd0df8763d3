#!/usr/bin/env bash
# GPU readiness check (benchmarks/gpu_check.py), under 5 minutes on one GPU: the metric core's GPU branch at full
# LoVR scale against its CPU result and the bare GEMM time, and encoder throughput in fp32/fp16/bf16.
# Run from the repository root on the GPU machine; it needs python3 with torch and transformers only.
#     bash benchmarks/gpu_check.sh [OUTPUT_DIR]
set -euo pipefail
out="${1:-${OUT:-.}}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt" || true
PYTHONUNBUFFERED=1 timeout 290 python3 benchmarks/gpu_check.py --output "$out/gpu_check.json" "${@:2}" \
    2>&1 | tee "$out/gpu_check.log"
