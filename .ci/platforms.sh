#!/usr/bin/env bash
# The platforms CI cannot run natively (docs/platforms.md):
#
# 1. every shipped WGSL module translated by naga to SPIR-V (checked by spirv-val), MSL, HLSL
#    and GLSL: how the Metal and DX12 paths are checked on a Linux machine;
# 2. aarch64 Linux: the kernels crate's tests and the engine's CPU tests, cross-built on this
#    x86-64 machine and run under qemu-user, where the NEON level is detected and every
#    kernel's NEON path runs.
#
# Called from .ci/run; runs on its own too (as root on Debian/Ubuntu: it installs what it
# needs with apt-get and rustup). Prints each stage's time.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
# The cross build gets its own target directory: its host artefacts (build scripts, proc
# macros) must not invalidate the native build's, nor wait on its lock.
cross_dir="${CARGO_TARGET_DIR:-target}/cross-aarch64"
cross=(cargo --config .cargo/aarch64-linux-cross.toml)

# The engine's test binaries that run under qemu: every one that needs neither a GPU nor the
# `distill` binary run as a child process (qemu-user runs only the process it starts). CPU
# only, but chosen for what a new architecture can break: numerics through the engine
# (gradcheck, losses by hand, end-to-end training, hints, the model's fused layers), file
# formats (checkpoint with f16/bf16, data decoders) and the CPU pool. Left out for time,
# platform-independent: plot, memory, ladder (its CPU rungs), fuzz. Left out by need: gpu_*,
# cli, bench, browser, doc_figures (they start GPUs, browsers or the binary).
engine_tests=(--lib --test gradcheck --test ops_errors --test trainer --test transfer
    --test ensemble --test hint --test arch_spec --test checkpoint --test cpu_pool --test data
    --test train_synthetic --test layer_order)
# GPU tests inside those binaries, skipped by name. No GPU is visible under qemu, and
# DISTILL_REQUIRE_GPU=1 stays set, so a GPU test missing from this list fails rather than
# passing on a skip line.
skip_gpu=(--skip backend::gpu::bench_kernels:: --skip backend::gpu::standalone::
    --skip backend::gpu::shader_check::tests::a_broken_module_is_reported_with_its_line
    --skip backend::gpu::shader_check::tests::every_shipped_module_compiles_or_is_named_unsupported
    --skip every_rung_times_a_batch_of_calls --skip the_op_and_the_hint_term_on_the_gpu
    --skip the_fused_forward_matches_the_layers_one_by_one_on_the_gpu)
export DISTILL_REQUIRE_GPU=1

start=$SECONDS
stage_start=""
# Prints the time of the stage that ends, then the next stage's name (as .ci/run does).
stage() {
    if [ -n "$stage_start" ]; then
        echo "    ($(( SECONDS - stage_start )) s)"
    fi
    stage_start=$SECONDS
    echo "--- platforms: $1"
}

stage "installing spirv-tools, the aarch64 cross linker and libc, qemu-user, the rust target"
missing=()
command -v spirv-val >/dev/null || missing+=(spirv-tools)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
test -e /usr/aarch64-linux-gnu/lib/crt1.o || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
    echo "apt-get install ${missing[*]}"
    apt-get update -qq || { echo "platforms.sh: apt-get update failed" >&2; exit 1; }
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null; then
        echo "platforms.sh: apt-get install ${missing[*]} failed" >&2
        exit 1
    fi
fi
if ! rustup target add "$target"; then
    echo "platforms.sh: rustup target add $target failed" >&2
    exit 1
fi

stage "every shipped shader through naga: SPIR-V (+ spirv-val), MSL, HLSL, GLSL"
DISTILL_REQUIRE_SPIRV_VAL=1 cargo test -q --test shader_translation -- --nocapture

stage "aarch64: cross-building the kernels' and the engine's tests"
"${cross[@]}" test -q --target "$target" --target-dir "$cross_dir" -p distill-kernels --no-run
"${cross[@]}" test -q --target "$target" --target-dir "$cross_dir" -p distill "${engine_tests[@]}" \
    --no-run

stage "aarch64 under qemu: the kernels' tests (scalar and NEON levels)"
"${cross[@]}" test --target "$target" --target-dir "$cross_dir" -p distill-kernels
# Which levels ran: the test fails unless NEON is detected and the default.
"${cross[@]}" test --target "$target" --target-dir "$cross_dir" -p distill-kernels \
    --test levels the_levels_this_target_detects -- --nocapture

stage "aarch64 under qemu: the engine's CPU tests (GPU tests skipped by name)"
"${cross[@]}" test --target "$target" --target-dir "$cross_dir" -p distill "${engine_tests[@]}" \
    -- "${skip_gpu[@]}"
# The binary itself: the CPU backend reports the NEON level.
devices="$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$cross_dir/$target/debug/distill" devices)"
echo "$devices"
grep -q '^cpu .*(neon, ' <<<"$devices"

stage "done"
echo "platforms took $(( SECONDS - start )) s"
