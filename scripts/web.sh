#!/usr/bin/env bash
# Builds the browser engine (the distill library for wasm32, WebGPU backend + SIMD128 CPU
# kernels) into web/pkg/, and with `--serve [PORT]` serves the repository root on 127.0.0.1
# so that web/ finds datasets/ beside it: open http://127.0.0.1:PORT/web/.
#
# Needs: rustup target add wasm32-unknown-unknown; cargo install wasm-bindgen-cli --version V
# where V is the wasm-bindgen version in Cargo.lock (this script says which if it differs).
set -euo pipefail
cd "$(dirname "$0")/.."

want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
if ! command -v wasm-bindgen >/dev/null; then
    echo "wasm-bindgen not found: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
have="$(wasm-bindgen --version | awk '{ print $2 }')"
if [ "$have" != "$want" ]; then
    echo "wasm-bindgen $have does not match the crate's $want: cargo install wasm-bindgen-cli --version $want --force" >&2
    exit 1
fi

target_dir="${CARGO_TARGET_DIR:-target}"
cargo rustc --lib --release --target wasm32-unknown-unknown --crate-type cdylib -q
wasm-bindgen --target web --no-typescript --out-dir web/pkg --out-name distill \
    "$target_dir/wasm32-unknown-unknown/release/distill.wasm"
echo "built web/pkg/ ($(du -h web/pkg/distill_bg.wasm | cut -f1) of WebAssembly)"

if [ "${1:-}" = "--serve" ]; then
    port="${2:-8000}"
    echo "serving on http://127.0.0.1:$port/web/ (Ctrl-C stops)"
    exec python3 -m http.server --bind 127.0.0.1 "$port"
fi
