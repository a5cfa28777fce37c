#!/usr/bin/env bash
# Prepares a check of a machine that has a GPU but no Rust toolchain: builds here the release
# `distill` binary, the GPU test binaries (gpu_parity, gpu_engine, ladder) and the training
# bench into `.device/`, and downloads the Vulkan loader (libvulkan1) into `.gl/` for GPU
# machines whose driver comes without one. Both folders are ignored by git.
#
# Then copy the source tree with `.device/` and `.gl/` to the GPU machine and run there
#     bash scripts/device-check.sh RESULTS_DIR
# (see that script for what it measures).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo '/.gl/' >> .git/info/exclude
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude

# The Vulkan loader (the GPU machine may have the vendor's driver and ICD but no libvulkan).
if [ ! -e .gl/done ]; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update -qq
    (cd .gl && apt-get $o download libvulkan1 >/dev/null)
    touch .gl/done
fi

# Release binaries without debug info, compressed: a smaller tree to copy.
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_BENCH_DEBUG=false
rm -rf .device && mkdir -p .device
cargo build --release --bin distill
cp target/release/distill .device/
for t in gpu_parity gpu_engine ladder; do
    exe=$(cargo test --release --no-run --test "$t" --message-format=json 2>/dev/null | grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    cp "$exe" ".device/test-$t"
done
for b in train; do
    exe=$(cargo bench --no-run --bench "$b" --message-format=json 2>/dev/null | grep '"kind":\["bench"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    cp "$exe" ".device/bench-$b"
done
strip .device/* 2>/dev/null || true
gzip -9 .device/*
du -sh .device .gl
echo "copy this tree (with .device/ and .gl/) to the GPU machine and run there: bash scripts/device-check.sh RESULTS_DIR"
