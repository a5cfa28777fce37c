#!/usr/bin/env python3
"""Load a distill checkpoint into PyTorch modules of the same layout and print its logits.

This checks the promise that distill's checkpoints are plain PyTorch `state_dict`s:
the file is read with `safetensors.torch.load_file` and loaded with
`model.load_state_dict(..., strict=True)`, so any missing, unexpected or mis-shaped
tensor is an error here.

Usage:
    pip install torch safetensors numpy
    python3 scripts/check_pytorch_load.py runs/x/kd/best.safetensors
    python3 scripts/check_pytorch_load.py runs/x/teacher/best.safetensors --input batch.npy
    python3 scripts/check_pytorch_load.py model.safetensors --arch c16-c32-f128 \
        --in-channels 1 --height 28 --width 28 --num-classes 10

The layout (distill's `teacher` and `student` presets and every compact spec): one
`convK = Conv2d(c_in, c_K, 3, padding=1)`, ReLU, MaxPool2d(2) per conv width, flatten (NCHW
order), `fc1 = Linear(c_last * (H >> K) * (W >> K), hidden)`, ReLU, `fc2 = Linear(hidden,
classes)`. The presets: teacher = c64-c128-f1000, student = c32-c64-f500.

The architecture comes from, in order: `--arch` (a preset or a compact spec such as
c16-c32-f128); the checkpoint metadata (`arch_spec`, a JSON object with `conv_channels` and
`hidden`, or `arch`, a preset or a spec); else the tensor shapes (conv1.weight, conv2.weight,
…, fc1.weight), as for a bare PyTorch `state_dict`. The input size and the class count come
from the flags, else the metadata (`in_channels`, `height`, `width`, `num_classes`), else the
shapes where they tell (input channels and classes; height and width need the metadata or
the flags).

Input: `--input FILE.npy` holds an array of shape [N, C, H, W] or [C, H, W], already
normalised the way the model was trained (distill's metadata records the normalisation).
Without `--input`, a fixed batch of 2 (zeros and a 0..1 ramp) is used, so two runs
print the same numbers. `--save-logits out.npy` writes the logits for comparison with
distill's own predictions. f16/bf16 checkpoints are converted to float32 before loading.
"""
import argparse
import json
import sys

PRESETS = {
    # arch: (conv widths, hidden width)
    "teacher": ([64, 128], 1000),
    "student": ([32, 64], 500),
}


def parse_spec(spec):
    """A preset name or a compact spec (`c16-c32-f128`) -> (conv widths, hidden width)."""
    if spec in PRESETS:
        convs, hidden = PRESETS[spec]
        return list(convs), hidden
    convs, hidden = [], None
    for part in spec.split("-"):
        kind, digits = part[:1], part[1:]
        if kind not in ("c", "f") or not digits.isdigit() or int(digits) < 1:
            raise ValueError(f"architecture `{spec}`: `{part}` is neither cN nor fN")
        if hidden is not None:
            raise ValueError(f"architecture `{spec}`: `{part}` follows the hidden width")
        if kind == "c":
            convs.append(int(digits))
        else:
            hidden = int(digits)
    if not convs or hidden is None:
        raise ValueError(f"architecture `{spec}`: expected conv widths then one hidden width")
    return convs, hidden


def layout_from_shapes(shapes):
    """(conv widths, hidden, input channels, classes) of a state_dict's tensor shapes."""
    convs, in_ch = [], None
    while f"conv{len(convs) + 1}.weight" in shapes:
        shape = shapes[f"conv{len(convs) + 1}.weight"]
        if in_ch is None:
            in_ch = shape[1]
        convs.append(shape[0])
    if not convs or "fc1.weight" not in shapes or "fc2.weight" not in shapes:
        raise ValueError("no conv1.weight, fc1.weight and fc2.weight: not the presets' layout")
    return convs, shapes["fc1.weight"][0], in_ch, shapes["fc2.weight"][0]


def resolve(arch_flag, sizes, meta, shapes):
    """The architecture and sizes to build: see the module docstring for the order.

    `sizes` maps in_channels, height, width, num_classes to a flag's value or None.
    Returns (description, conv widths, hidden, in_ch, height, width, classes)."""
    from_shapes = layout_from_shapes(shapes)
    if arch_flag:
        convs, hidden = parse_spec(arch_flag)
        name = arch_flag
    elif "arch_spec" in meta:
        spec = json.loads(meta["arch_spec"])
        convs, hidden = list(spec["conv_channels"]), spec["hidden"]
        name = spec.get("arch", "arch_spec")
    elif "arch" in meta:
        convs, hidden = parse_spec(meta["arch"])
        name = meta["arch"]
    else:
        convs, hidden = from_shapes[0], from_shapes[1]
        name = "-".join([f"c{c}" for c in convs] + [f"f{hidden}"]) + " (from the shapes)"
    spec_meta = json.loads(meta["arch_spec"]) if "arch_spec" in meta else {}

    def size(key, fallback):
        for value in (sizes.get(key), meta.get(key), spec_meta.get(key), fallback):
            if value is not None:
                return int(value)
        sys.exit(f"the checkpoint does not say its `{key}`; pass --{key.replace('_', '-')}")

    in_ch = size("in_channels", from_shapes[2])
    classes = size("num_classes", from_shapes[3])
    height = size("height", None)
    width = size("width", None)
    return name, convs, hidden, in_ch, height, width, classes


def build(convs, hidden, in_ch, height, width, classes):
    """The PyTorch module of the layout; state_dict keys conv1.*, …, convK.*, fc1.*, fc2.*."""
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            c_in = in_ch
            for i, c in enumerate(convs):
                setattr(self, f"conv{i + 1}", nn.Conv2d(c_in, c, 3, padding=1))
                c_in = c
            self.pool = nn.MaxPool2d(2)
            self.relu = nn.ReLU()
            self.flatten = nn.Flatten()  # NCHW order: channel-major, then rows, then columns
            k = len(convs)
            self.fc1 = nn.Linear(convs[-1] * (height >> k) * (width >> k), hidden)
            self.fc2 = nn.Linear(hidden, classes)

        def forward(self, x):
            for i in range(len(convs)):
                x = self.pool(self.relu(getattr(self, f"conv{i + 1}")(x)))
            x = self.relu(self.fc1(self.flatten(x)))
            return self.fc2(x)

    return Net()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--input", help=".npy array [N, C, H, W] or [C, H, W], already normalised")
    ap.add_argument("--arch", help="teacher, student or a compact spec such as c16-c32-f128")
    ap.add_argument("--in-channels", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--save-logits", help="write the logits to this .npy file")
    args = ap.parse_args()

    try:
        import numpy as np
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError as e:  # pragma: no cover - depends on the environment
        sys.exit(f"check_pytorch_load.py needs `pip install torch safetensors numpy` ({e})")

    with safe_open(args.checkpoint, framework="pt") as f:
        meta = f.metadata() or {}
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    sizes = {
        "in_channels": args.in_channels,
        "height": args.height,
        "width": args.width,
        "num_classes": args.num_classes,
    }
    try:
        name, convs, hidden, in_ch, height, width, classes = resolve(args.arch, sizes, meta, shapes)
    except (ValueError, KeyError) as e:
        sys.exit(f"{args.checkpoint}: {e}")

    model = build(convs, hidden, in_ch, height, width, classes)
    state = {k: v.float() for k, v in load_file(args.checkpoint).items()}  # f16/bf16 -> f32
    model.load_state_dict(state, strict=True)
    model.eval()
    print(f"loaded {args.checkpoint}: {name} (convs {convs}, hidden {hidden}), input "
          f"[{in_ch}, {height}, {width}], {classes} classes, "
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
