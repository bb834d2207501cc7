"""The weight gradient of a conv over a small map: torchqat's per-tap GEMMs
(torchqat/nn/conv_grad.py) against ATen's convolution_backward (oneDNN on
the CPU), side by side in one run, on ResNet-18's 3x3 convs at the map sizes
small images give (the Fashion-MNIST demo's 28x28 input: layer1 at 7x7,
layer4 at 1x1), and the whole training step of that model with and without
``torchqat.nn.fast_small_map_convs``.

    python benchmarks/conv_weight_grad.py [--batch 128] [--threads 2]

Inputs are channels-last (what the examples train in). Writes
results/bench_conv_weight_grad.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import torchqat
from torchqat.nn import conv_grad
from bench_util import machine, median_seconds, print_table, write_json

# (name, in, out, stride, input size): ResNet-18 on 28x28 with a stride-2 stem and the max pool
LAYERS = [
    ("layer1 3x3 @7", 64, 64, 1, 7),
    ("layer2.0 3x3 s2 @7", 64, 128, 2, 7),
    ("layer2 3x3 @4", 128, 128, 1, 4),
    ("layer3.0 3x3 s2 @4", 128, 256, 2, 4),
    ("layer3 3x3 @2", 256, 256, 1, 2),
    ("layer4.0 3x3 s2 @2", 256, 512, 2, 2),
    ("layer4 3x3 @1", 512, 512, 1, 1),
]


def layer_rows(batch: int, threads: int, min_run_time: float):
    rows = []
    for name, c, o, stride, size in LAYERS:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, c, size, size, generator=gen).contiguous(memory_format=torch.channels_last)
        w = torch.randn(o, c, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
        g = torch.randn_like(F.conv2d(x, w, None, stride, 1))
        aten = median_seconds(lambda: torch.ops.aten.convolution_backward(
            g, x, w, None, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]), threads, min_run_time)
        taps = median_seconds(lambda: conv_grad.weight_grad_by_taps(g, x, (3, 3), (stride,) * 2, (1, 1), (1, 1)),
                              threads, min_run_time)
        positions = g.shape[-1] * g.shape[-2]
        rows.append({"layer": name, "batch": batch, "threads": threads, "output_positions": positions,
                     "aten_ms": 1e3 * aten, "per_tap_gemm_ms": 1e3 * taps, "speedup": aten / taps,
                     "used_by_conv2d": positions <= conv_grad.TAP_GEMM_MAX_POSITIONS})
    return rows


def step_row(batch: int, threads: int, min_run_time: float, fast: bool):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 3, 2, 1, bias=False)
    model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with torchqat.nn.fast_small_map_convs(model) if fast else contextlib.nullcontext():
        return median_seconds(step, threads, min_run_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--out", default="results/bench_conv_weight_grad.json")
    args = parser.parse_args()
    rows, steps = [], []
    for threads in args.threads:
        rows += layer_rows(args.batch, threads, args.min_run_time)
        plain, fast = (step_row(args.batch, threads, 2 * args.min_run_time, f) for f in (False, True))
        steps.append({"model": "ResNet-18, 1x28x28", "batch": args.batch, "threads": threads,
                      "plain_step_ms": 1e3 * plain, "fast_small_map_convs_step_ms": 1e3 * fast,
                      "speedup": plain / fast})
    print_table(rows, [("layer", "layer", "s"), ("batch", "batch", "d"), ("threads", "threads", "d"),
                       ("output positions", "output_positions", "d"), ("ATen weight grad ms", "aten_ms", ".2f"),
                       ("per-tap GEMMs ms", "per_tap_gemm_ms", ".2f"), ("speed-up", "speedup", ".2f"),
                       ("conv2d uses it", "used_by_conv2d", "")])
    print_table(steps, [("model", "model", "s"), ("batch", "batch", "d"), ("threads", "threads", "d"),
                        ("plain step ms", "plain_step_ms", ".1f"),
                        ("fast_small_map_convs step ms", "fast_small_map_convs_step_ms", ".1f"),
                        ("speed-up", "speedup", ".2f")])
    write_json(args.out, {"machine": machine(), "layers": rows, "training_step": steps})


if __name__ == "__main__":
    main()
