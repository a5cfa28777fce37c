#!/usr/bin/env bash
# Checks and measures a machine with a GPU, from the binaries scripts/device-prepare.sh built
# (no Rust toolchain needed): the GPU tests, the GEMM tile autotune and its cache,
# `distill bench` on the GPUs (its JSON report and a record of every figure), the kernel
# ladders, the training bench beside PyTorch, a quick distillation run on the GPU, and a check
# that PyTorch (where installed) loads the run's checkpoints into modules of the presets'
# layout.
#
#     bash scripts/device-check.sh [RESULTS_DIR]       (default: device-results)
#
# Everything it prints also lands in RESULTS_DIR/device-check.log; the reports, the record,
# the autotune cache and the quick run's report go there too (its checkpoints are deleted).
set -uo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-device-results}")"
mkdir -p "$out"
gunzip -f .device/*.gz
# The Vulkan loader fetched by device-prepare.sh, for machines without one.
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# Fail rather than skip when no GPU opens; the benches write their JSON into $out.
export DISTILL_REQUIRE_GPU=1 XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" CARGO_TARGET_DIR="$out"
# The GEMM tile autotune's cache, and the reference peaks `distill bench` keeps.
export DISTILL_CACHE_DIR="$out/cache"
log="$out/device-check.log"
{
    cat /proc/loadavg
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    echo "=== autotune: opening the GPU times the tile candidates once, then reads the cache"
    time .device/distill devices
    time .device/distill devices
    cat "$out"/cache/autotune/*.json
    echo "=== gpu tests"
    .device/test-gpu_parity -q
    .device/test-gpu_engine -q
    .device/test-ladder -q
    echo "=== distill bench on the GPUs"
    .device/distill bench --device gpu --out "$out/bench-gpu.json" --record "$out/record-bench-gpu.json"
    echo "=== the kernel ladders on the GPU"
    .device/distill bench --ladder matmul --device gpu --quick
    .device/distill bench --ladder conv --device gpu --quick
    echo "=== train bench, PyTorch beside it (quick budgets)"
    DISTILL_BENCH_QUICK=1 .device/bench-train --bench
    echo "=== distill run --quick on the GPU"
    time .device/distill --device gpu run --quick --out "$out/run-quick" --quiet --record "$out/record-run-quick.json"
    cat "$out/run-quick/report.md"
    echo "=== PyTorch loads the KD student"
    python3 scripts/check_pytorch_load.py "$out/run-quick/kd/best.safetensors"
    cat /proc/loadavg
} 2>&1 | tee "$log"
# Keep the results small: the reports and records, not the checkpoints or build folders.
rm -rf "$out/run-quick/teacher" "$out/run-quick/baseline" "$out/run-quick/kd" "$out"/run-quick/*.png "$out/run-quick/config.json" "$out/release" "$out/debug"
