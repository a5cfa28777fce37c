#!/usr/bin/env python3
"""PyTorch yardstick: the same training and inference steps as distill's train bench, timed in
PyTorch on the same number of threads.

An outside reference for the benchmark only; distill never depends on PyTorch.

    python3 benches/pytorch_yardstick.py --threads 2 --seconds 2

prints one JSON object on stdout:

    {"torch_version": "...", "threads": 2, "rows": [{"name": "teacher train b128",
     "img_per_s": 675.0, "iters": 40}, ...]}

Rows (the names distill's bench uses for its own figures):
- `teacher train b128`, `student train b128`: forward, cross-entropy, backward, Adam step,
  zero_grad, at batch 128;
- `student kd b128`: the same with Hinton's KD loss (T = 4, alpha = 0.9) against teacher logits
  computed once beforehand, as distill's offline KD does;
- `teacher infer b256`, `student infer b256`: forward under `torch.inference_mode()`.

The models are the teacher and student presets on 1x28x28 inputs with 10 classes: conv3x3(pad 1) relu
maxpool2 twice (64/128 channels for the teacher, 32/64 for the student), then linear(1000 or
500) relu, linear(10). Inputs are random tensors made once, as in distill's bench. Each row
warms up, sizes its run from one timed call, then times as many calls as fit in --seconds.

Exit status 0 on success; otherwise a message on stderr and status 1.
"""

import argparse
import json
import sys
import time

ARCHS = {"teacher": (64, 128, 1000), "student": (32, 64, 500)}
CLASSES = 10
SIDE = 28
TRAIN_BATCH = 128
INFER_BATCH = 256
TEMPERATURE = 4.0
ALPHA = 0.9


def build(torch, arch):
    """The preset `arch` (teacher or student) as a torch.nn.Sequential (state_dict names differ from
    distill's checkpoints, which does not matter for timing)."""
    nn = torch.nn
    c1, c2, hidden = ARCHS[arch]
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * (SIDE // 4) ** 2, hidden), nn.ReLU(),
        nn.Linear(hidden, CLASSES),
    )


def kd_loss(torch, student_logits, teacher_logits, labels):
    """Hinton KD: alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)."""
    f = torch.nn.functional
    soft = f.kl_div(
        f.log_softmax(student_logits / TEMPERATURE, dim=1),
        f.log_softmax(teacher_logits / TEMPERATURE, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = f.cross_entropy(student_logits, labels)
    return ALPHA * TEMPERATURE * TEMPERATURE * soft + (1.0 - ALPHA) * hard


def time_calls(step, seconds):
    """Warms up, sizes the run from one timed call, returns (seconds per call, calls)."""
    step(0)
    step(1)
    t = time.perf_counter()
    step(2)
    one = max(time.perf_counter() - t, 1e-6)
    n = max(2, min(10_000, int(seconds / one)))
    t = time.perf_counter()
    for i in range(n):
        step(i)
    return (time.perf_counter() - t) / n, n


def train_row(torch, arch, seconds, teacher_logits=None):
    """Training throughput of `arch`; with `teacher_logits`, the KD step."""
    f = torch.nn.functional
    torch.manual_seed(0)
    model = build(torch, arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs = [torch.randn(TRAIN_BATCH, 1, SIDE, SIDE) for _ in range(2)]
    ys = [torch.randint(0, CLASSES, (TRAIN_BATCH,)) for _ in range(2)]

    def step(i):
        x, y = xs[i % 2], ys[i % 2]
        logits = model(x)
        if teacher_logits is None:
            loss = f.cross_entropy(logits, y)
        else:
            loss = kd_loss(torch, logits, teacher_logits[i % 2], y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    per_call, n = time_calls(step, seconds)
    return TRAIN_BATCH / per_call, n


def infer_row(torch, arch, seconds):
    """Inference throughput of `arch` at batch 256."""
    torch.manual_seed(0)
    model = build(torch, arch).eval()
    xs = [torch.randn(INFER_BATCH, 1, SIDE, SIDE) for _ in range(2)]

    def step(i):
        with torch.inference_mode():
            model(xs[i % 2])

    per_call, n = time_calls(step, seconds)
    return INFER_BATCH / per_call, n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True, help="intra-op threads")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per row")
    args = parser.parse_args()
    if args.threads < 1 or args.seconds <= 0:
        print("--threads must be >= 1 and --seconds > 0", file=sys.stderr)
        return 1
    try:
        import torch
    except ImportError as e:
        print(f"PyTorch is not importable: {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    rows = []
    for arch in ("teacher", "student"):
        ips, n = train_row(torch, arch, args.seconds)
        rows.append({"name": f"{arch} train b{TRAIN_BATCH}", "img_per_s": ips, "iters": n})
    torch.manual_seed(1)
    with torch.inference_mode():
        teacher = build(torch, "teacher").eval()
        logits = [teacher(torch.randn(TRAIN_BATCH, 1, SIDE, SIDE)) for _ in range(2)]
    logits = [t.clone() for t in logits]  # plain tensors, usable outside inference mode
    ips, n = train_row(torch, "student", args.seconds, teacher_logits=logits)
    rows.append({"name": f"student kd b{TRAIN_BATCH}", "img_per_s": ips, "iters": n})
    for arch in ("teacher", "student"):
        ips, n = infer_row(torch, arch, args.seconds)
        rows.append({"name": f"{arch} infer b{INFER_BATCH}", "img_per_s": ips, "iters": n})

    print(json.dumps({"torch_version": torch.__version__, "threads": args.threads, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
