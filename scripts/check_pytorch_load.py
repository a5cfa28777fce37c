#!/usr/bin/env python3
"""Load a distill checkpoint into the seed's PyTorch modules and print its logits.

This checks the promise that distill's checkpoints are plain PyTorch `state_dict`s:
the file is read with `safetensors.torch.load_file` and loaded with
`model.load_state_dict(..., strict=True)`, so any missing, unexpected or mis-shaped
tensor is an error here.

Usage:
    pip install torch safetensors numpy
    python3 scripts/check_pytorch_load.py runs/x/student.safetensors
    python3 scripts/check_pytorch_load.py runs/x/teacher.safetensors --input batch.npy
    python3 scripts/check_pytorch_load.py model.safetensors --arch student \
        --in-channels 1 --height 28 --width 28 --num-classes 10

The architecture comes from the checkpoint metadata (keys `arch` = teacher|student,
`in_channels`, `height`, `width`, `num_classes`); the flags override or supply them.

Input: `--input FILE.npy` holds an array of shape [N, C, H, W] or [C, H, W], already
normalised the way the model was trained (distill's metadata records the normalisation).
Without `--input`, a fixed batch of 2 (zeros and a 0..1 ramp) is used, so two runs
print the same numbers. `--save-logits out.npy` writes the logits for comparison with
distill's own predictions. f16/bf16 checkpoints are converted to float32 before loading.

Architectures (the seed's modules, reproduced exactly):
    teacher: conv1 = Conv2d(in_ch, 64, 3, padding=1), ReLU, MaxPool2d(2)
             conv2 = Conv2d(64, 128, 3, padding=1), ReLU, MaxPool2d(2)
             flatten (NCHW order), fc1 = Linear(128*(H//4)*(W//4), 1000), ReLU
             fc2 = Linear(1000, classes)
    student: the same with 32 and 64 channels and fc1 of width 500.
"""
import argparse
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    from safetensors import safe_open
    from safetensors.torch import load_file
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"check_pytorch_load.py needs `pip install torch safetensors numpy` ({e})")

WIDTHS = {
    # arch: (conv1 channels, conv2 channels, fc1 width)
    "teacher": (64, 128, 1000),
    "student": (32, 64, 500),
}


class Net(nn.Module):
    """The seed's CNN; state_dict keys conv1.*, conv2.*, fc1.*, fc2.*."""

    def __init__(self, arch: str, in_ch: int, height: int, width: int, classes: int):
        super().__init__()
        c1, c2, hidden = WIDTHS[arch]
        self.conv1 = nn.Conv2d(in_ch, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()  # NCHW order: channel-major, then rows, then columns
        self.fc1 = nn.Linear(c2 * (height // 4) * (width // 4), hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc2(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--input", help=".npy array [N, C, H, W] or [C, H, W], already normalised")
    ap.add_argument("--arch", choices=sorted(WIDTHS))
    ap.add_argument("--in-channels", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--save-logits", help="write the logits to this .npy file")
    args = ap.parse_args()

    with safe_open(args.checkpoint, framework="pt") as f:
        meta = f.metadata() or {}

    def spec(flag, key, conv):
        value = flag if flag is not None else meta.get(key)
        if value is None:
            sys.exit(f"{args.checkpoint}: metadata has no `{key}`; pass --{key.replace('_', '-')}")
        return conv(value)

    arch = spec(args.arch, "arch", str)
    if arch not in WIDTHS:
        sys.exit(f"{args.checkpoint}: arch `{arch}` is not one of {sorted(WIDTHS)}")
    in_ch = spec(args.in_channels, "in_channels", int)
    height = spec(args.height, "height", int)
    width = spec(args.width, "width", int)
    classes = spec(args.num_classes, "num_classes", int)

    model = Net(arch, in_ch, height, width, classes)
    state = {k: v.float() for k, v in load_file(args.checkpoint).items()}  # f16/bf16 -> f32
    model.load_state_dict(state, strict=True)
    model.eval()
    print(f"loaded {args.checkpoint}: {arch}, input [{in_ch}, {height}, {width}], {classes} classes, "
          f"{sum(p.numel() for p in model.parameters())} parameters")

    if args.input:
        x = np.load(args.input).astype(np.float32)
        if x.ndim == 3:
            x = x[None]
    else:
        ramp = np.linspace(0.0, 1.0, in_ch * height * width, dtype=np.float32)
        x = np.stack([np.zeros_like(ramp), ramp]).reshape(2, in_ch, height, width)
    if tuple(x.shape[1:]) != (in_ch, height, width):
        sys.exit(f"input shape {list(x.shape)} does not match [N, {in_ch}, {height}, {width}]")

    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    np.set_printoptions(precision=5, suppress=True, linewidth=120)
    for i, row in enumerate(logits.numpy()):
        print(f"[{i}] argmax {int(row.argmax())}  logits {row}")
    if args.save_logits:
        np.save(args.save_logits, logits.numpy())


if __name__ == "__main__":
    main()
