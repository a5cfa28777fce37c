#!/usr/bin/env bash
# Runs on the `device` machine (see scripts/device-prepare.sh): GPU tests, `distill bench` (its
# JSON report comes back), the kernel ladders, the training bench beside PyTorch, and a quick
# distillation run on the GPU through Vulkan, plus a check that
# PyTorch (installed there) loads our checkpoints into the seed's modules. Everything it
# prints also lands in $OUT/device-check.log.
set -uo pipefail
gunzip -f .device/*.gz
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export DISTILL_REQUIRE_GPU=1 XDG_RUNTIME_DIR=/tmp CARGO_TARGET_DIR="$OUT"
# The GEMM tile autotune's cache comes back with the results.
export DISTILL_CACHE_DIR="$OUT/cache"
log="$OUT/device-check.log"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    echo "=== autotune: opening the GPU times the tile candidates once, then reads the cache"
    time .device/distill devices
    time .device/distill devices
    cat "$OUT"/cache/autotune/*.json
    echo "=== gpu tests"
    .device/test-gpu_parity -q
    .device/test-gpu_engine -q
    .device/test-ladder -q
    echo "=== distill bench on the GPUs"
    .device/distill bench --device gpu --out "$OUT/bench-gpu.json"
    echo "=== the kernel ladders on the GPU"
    .device/distill bench --ladder matmul --device gpu --quick
    .device/distill bench --ladder conv --device gpu --quick
    echo "=== train bench, PyTorch beside it"
    DISTILL_BENCH_SECS=1 .device/bench-train --bench
    echo "=== distill run --quick on the GPU"
    time .device/distill --device gpu run --quick --out "$OUT/run-quick" --quiet
    cat "$OUT/run-quick/report.md"
    echo "=== PyTorch loads the KD student"
    python3 scripts/check_pytorch_load.py "$OUT/run-quick/kd/best.safetensors"
} 2>&1 | tee "$log"
# Keep what comes back small: the reports, not the checkpoints.
# At most 8 files come back.
rm -rf "$OUT/run-quick/teacher" "$OUT/run-quick/baseline" "$OUT/run-quick/kd" "$OUT"/run-quick/*.png "$OUT/run-quick/config.json" "$OUT/release" "$OUT/debug"
