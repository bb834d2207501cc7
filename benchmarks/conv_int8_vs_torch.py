"""INT8 Conv2d (torchqat.conv2d_int8, and depthwise_conv2d_int8 for the
depthwise rows) and W4A8 Conv2d (torchqat.conv2d_w4a8: int4 weights, a
scale per 32 input channels) against float32 F.conv2d and PyTorch's quantized conv
(torch.ops.quantized.conv2d, x86 engine), side by side in one run, on the
convolutions of ResNet-18 at 224x224 (every distinct layer shape), the grouped
convolutions of ResNeXt-50 32x4d (the exported model's Int8GroupedConv2d) and the
depthwise convolutions of MobileNetV2.

    python benchmarks/conv_int8_vs_torch.py [--batch 1 8] [--threads 1 2] [--min-run-time 0.3] [--only NAME]

Every input is channels-last (the layout all three run fastest on and the
exported model keeps); float32 gets the same. torchqat maps uint8 -> uint8
(requantized, bias fused), as PyTorch's quantized conv does; the W4A8 conv
maps uint8 -> float32 (what the exported model runs). GOPS counts
2 * N * OH * OW * O * (C / groups) * KH * KW operations. Writes
results/bench_conv_int8.json and prints a markdown table.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import torchqat
from torchqat.deploy.layers import ActQuant, Int8GroupedConv2d
from bench_util import machine, median_seconds, print_table, write_json

# (name, in, out, kernel, stride, padding, input size, groups)
RESNET18 = [
    ("conv1", 3, 64, 7, 2, 3, 224, 1),
    ("layer1 3x3", 64, 64, 3, 1, 1, 56, 1),
    ("layer2.0 3x3 s2", 64, 128, 3, 2, 1, 56, 1),
    ("layer2 3x3", 128, 128, 3, 1, 1, 28, 1),
    ("layer2 1x1 s2", 64, 128, 1, 2, 0, 56, 1),
    ("layer3.0 3x3 s2", 128, 256, 3, 2, 1, 28, 1),
    ("layer3 3x3", 256, 256, 3, 1, 1, 14, 1),
    ("layer3 1x1 s2", 128, 256, 1, 2, 0, 28, 1),
    ("layer4.0 3x3 s2", 256, 512, 3, 2, 1, 14, 1),
    ("layer4 3x3", 512, 512, 3, 1, 1, 7, 1),
    ("layer4 1x1 s2", 256, 512, 1, 2, 0, 14, 1),
]
# ResNeXt-50 32x4d's grouped 3x3 convs (32 groups of 4, 8, 16, 32 channels).
RESNEXT50_GROUPED = [
    ("resnext50 layer1 g32", 128, 128, 3, 1, 1, 56, 32),
    ("resnext50 layer2 g32", 256, 256, 3, 1, 1, 28, 32),
    ("resnext50 layer3 g32", 512, 512, 3, 1, 1, 14, 32),
    ("resnext50 layer4 g32", 1024, 1024, 3, 1, 1, 7, 32),
]
MOBILENET_V2_DEPTHWISE = [
    ("mbv2 dw 96 s2", 96, 96, 3, 2, 1, 112, 96),
    ("mbv2 dw 144", 144, 144, 3, 1, 1, 56, 144),
    ("mbv2 dw 384", 384, 384, 3, 1, 1, 14, 384),
    ("mbv2 dw 960", 960, 960, 3, 1, 1, 7, 960),
]


def cases(batch: int, c: int, o: int, k: int, stride: int, padding: int, size: int, groups: int):
    gen = torch.Generator().manual_seed(0)
    xf = torch.randn(batch, c, size, size, generator=gen).relu().contiguous(memory_format=torch.channels_last)
    wf = torch.randn(o, c // groups, k, k, generator=gen) * 0.05
    bias = torch.randn(o, generator=gen)
    x_scale, x_zero = float(xf.max()) / 255, 0
    w_scale = wf.abs().amax((1, 2, 3)) / 127
    xq = torch.quantize_per_tensor(xf, x_scale, x_zero, torch.quint8)
    x_u8 = xq.int_repr().contiguous(memory_format=torch.channels_last)
    wq = torch.round(wf / w_scale[:, None, None, None]).clamp(-127, 127).to(torch.int8)
    multiplier = (x_scale * w_scale).float()
    geometry = ([stride, stride], [padding, padding], [1, 1])
    out = {"float32 F.conv2d": lambda: F.conv2d(xf, wf, bias, stride, padding, 1, groups)}
    if groups == 1:
        packed, sums = torch.ops.torchqat.pack_linear_int8(wq.permute(0, 2, 3, 1).flatten(1))
        out["torchqat int8"] = lambda: torch.ops.torchqat.conv2d_int8(
            x_u8, x_zero, packed, sums, multiplier, bias, [k, k], *geometry, 0.05, 0)
        if (c * k * k) % 32 == 0:
            rows = wf.permute(0, 2, 3, 1).reshape(o, -1, 32)  # groups of 32 input channels within a tap
            scales = (rows.abs().amax(-1) / 7).clamp_min(1e-8)
            q4 = torch.round(rows / scales[..., None]).clamp(-8, 7).to(torch.int8).reshape(o, -1)
            packed4, sums4 = torch.ops.torchqat.pack_linear_w4a8(q4, scales.contiguous())
            out["torchqat w4a8"] = lambda: torch.ops.torchqat.conv2d_w4a8(
                x_u8, x_zero, x_scale, packed4, scales.contiguous(), sums4, bias, [k, k], *geometry)
    elif groups != c or o != c:  # grouped: the exported model's layer (runs of merged groups)
        act = ActQuant(x_scale, x_zero, 0, 255)
        layer = Int8GroupedConv2d(wq, w_scale, bias, act, False, *geometry, groups)
        layer.input_quantized = True
        layer._set_output(ActQuant(0.05, 0, 0, 255))
        out["torchqat int8"] = lambda: layer(x_u8)
    else:
        packed, sums = torch.ops.torchqat.pack_depthwise_int8(wq)
        out["torchqat int8"] = lambda: torch.ops.torchqat.depthwise_conv2d_int8(
            x_u8, x_zero, packed, sums, multiplier, bias, [k, k], *geometry, 0.05, 0)
    try:
        torch.backends.quantized.engine = "x86"
        qw = torch.quantize_per_channel(wf, w_scale.double(), torch.zeros(o, dtype=torch.long), 0, torch.qint8)
        prepacked = torch.ops.quantized.conv2d_prepack(qw, bias, [stride, stride], [padding, padding], [1, 1],
                                                       groups)
        xq_cl = xq.contiguous(memory_format=torch.channels_last)
        out["torch quantized.conv2d (x86)"] = lambda: torch.ops.quantized.conv2d(xq_cl, prepacked, 0.05, 0)
    except (RuntimeError, AttributeError) as e:  # a torch without the quantized engine
        print(f"torch quantized conv unavailable: {e}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--only", default="", help="run the layers whose name contains this")
    parser.add_argument("--out", default="results/bench_conv_int8.json")
    args = parser.parse_args()
    print(f"kernels: {torchqat._C.active_isa()}")
    rows = []
    for threads in args.threads:
        for batch in args.batch:
            for name, c, o, k, stride, padding, size, groups in RESNET18 + RESNEXT50_GROUPED + MOBILENET_V2_DEPTHWISE:
                if args.only not in name:
                    continue
                fns = cases(batch, c, o, k, stride, padding, size, groups)
                oh = (size + 2 * padding - k) // stride + 1
                ops = 2.0 * batch * oh * oh * o * (c // groups) * k * k
                secs = {impl: median_seconds(fn, threads, args.min_run_time) for impl, fn in fns.items()}
                base = secs["float32 F.conv2d"]
                peer = secs.get("torch quantized.conv2d (x86)")
                for impl, s in secs.items():
                    rows.append(dict(threads=threads, batch=batch, layer=name, impl=impl, us=1e6 * s,
                                     gops=ops / s / 1e9, vs_float=base / s,
                                     vs_torch_q=(peer / s) if peer else float("nan")))
                print(f"t={threads} b={batch} {name}: " + ", ".join(f"{i} {1e6 * s:.0f} µs" for i, s in secs.items()),
                      flush=True)
    print_table(rows, [("threads", "threads", ""), ("batch", "batch", ""), ("layer", "layer", ""),
                       ("implementation", "impl", ""), ("µs", "us", ".0f"), ("GOPS", "gops", ".1f"),
                       ("speed-up vs float32", "vs_float", ".2f"), ("vs torch quantized", "vs_torch_q", ".2f")])
    write_json(args.out, dict(machine=machine(), rows=rows))


if __name__ == "__main__":
    main()
