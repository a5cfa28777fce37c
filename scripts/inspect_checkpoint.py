#!/usr/bin/env python3
"""Inspect a distill checkpoint with the reference safetensors reader (no PyTorch needed).

Usage:
    pip install safetensors numpy
    python3 scripts/inspect_checkpoint.py runs/x/student.safetensors          # human-readable
    python3 scripts/inspect_checkpoint.py runs/x/student.safetensors --json   # machine-readable

Prints every tensor's name, dtype, shape and a few statistics, then the metadata. It reads the
file with `safetensors.numpy.load_file` and `safe_open`, i.e. the same parser PyTorch's
`safetensors.torch.load_file` uses, so a file this script reads is a file PyTorch reads.
The `--json` form is what `tests/checkpoint.rs` compares against (that test is skipped when
Python's safetensors is not installed).
"""
import argparse
import json
import sys

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"inspect_checkpoint.py needs `pip install safetensors numpy` ({e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--json", action="store_true", help="print one JSON object (names, dtypes, shapes, values)")
    args = ap.parse_args()

    tensors = load_file(args.path)
    with safe_open(args.path, framework="numpy") as f:
        metadata = f.metadata() or {}

    if args.json:
        out = {
            "tensors": {
                name: {
                    "dtype": str(t.dtype),
                    "shape": list(t.shape),
                    "values": t.astype(np.float64).ravel().tolist(),
                }
                for name, t in tensors.items()
            },
            "metadata": metadata,
        }
        json.dump(out, sys.stdout)
        print()
        return

    for name, t in tensors.items():
        x = t.astype(np.float64)
        stats = f"mean {x.mean():+.5f} std {x.std():.5f}" if x.size else "empty"
        print(f"{name:<24} {str(t.dtype):<8} {str(list(t.shape)):<20} {stats}")
    total = sum(t.nbytes for t in tensors.values())
    print(f"{len(tensors)} tensors, {total} bytes of data")
    for k in sorted(metadata):
        print(f"  {k} = {metadata[k]}")


if __name__ == "__main__":
    main()
