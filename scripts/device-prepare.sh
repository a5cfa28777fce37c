#!/usr/bin/env bash
# Prepare a run on the `device` machine (an NVIDIA H200 without a Rust toolchain): build the
# binaries here and fetch the Vulkan loader, into folders git ignores, so that one call of the
# device tool with carry [".gl", ".device"] and the command `bash scripts/device-check.sh`
# runs every GPU check and benchmark. See scripts/device-check.sh for what it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo '/.gl/' >> .git/info/exclude
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude

# The Vulkan loader (the machine has NVIDIA's driver and ICD but maybe no libvulkan).
if [ ! -e .gl/done ]; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update -qq
    (cd .gl && apt-get $o download libvulkan1 >/dev/null)
    touch .gl/done
fi

# Release binaries without debug info (the carry limit is 64 MiB in all).
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
# The whole working tree travels, shipped dataset included (~30 MiB), under a 64 MiB limit.
gzip -9 .device/*
du -sh .device .gl
echo "now: device run with carry [\".gl\", \".device\"] and command: bash scripts/device-check.sh"
