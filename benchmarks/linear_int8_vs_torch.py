"""INT8 Linear (torchqat.linear_int8) against float32 F.linear and PyTorch's
quantized linear (torch.ops.quantized.linear, x86 engine), side by side in one
run, for M (rows: batch x tokens) in {1, 16, 128, 1024} and N = K in
{768, 1024, 3072, 4096}.

    python benchmarks/linear_int8_vs_torch.py [--threads 1 2] [--min-run-time 0.3]

torchqat runs uint8 activations x int8 per-channel weights -> float output
(bias and dequantization fused) and -> uint8 (requantized), and for M <= 16
int4 weights in groups of 32 and 128 with float activations (weight-only) and
with the uint8 activations (W4A8); PyTorch's
quantized linear maps quint8 -> quint8. GOPS counts 2*M*N*K operations. Writes
results/bench_linear_int8.json and prints a markdown table.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import torchqat
from bench_util import machine, median_seconds, print_table, write_json

MS = [1, 16, 128, 1024]
NKS = [768, 1024, 3072, 4096]


def cases(m: int, nk: int):
    gen = torch.Generator().manual_seed(0)
    xf = torch.randn(m, nk, generator=gen)
    wf = torch.randn(nk, nk, generator=gen) * 0.05
    bias = torch.randn(nk, generator=gen)
    x_scale, x_zero = float(xf.abs().max()) / 127.5, 128
    w_scale = wf.abs().amax(1) / 127
    xq = torch.quantize_per_tensor(xf, x_scale, x_zero, torch.quint8)
    wq = torch.round(wf / w_scale[:, None]).clamp(-127, 127).to(torch.int8)
    packed, sums = torch.ops.torchqat.pack_linear_int8(wq)
    multiplier = (x_scale * w_scale).float()
    x_u8 = xq.int_repr()
    ours = lambda: torch.ops.torchqat.linear_int8(x_u8, x_zero, packed, sums, multiplier, bias)  # noqa: E731
    ours_u8 = lambda: torch.ops.torchqat.linear_int8(x_u8, x_zero, packed, sums, multiplier, bias, 0.1, 128)  # noqa: E731,E501
    out = {"torchqat int8 -> f32": ours, "torchqat int8 -> u8": ours_u8, "float32 F.linear": lambda: F.linear(xf, wf, bias)}
    if m <= 16:  # int4 weights for decoding, groups of 32 and 128 along K
        for group in (32, 128):
            groups = wf.reshape(nk, nk // group, group)
            s4 = (groups.abs().amax(-1) / 7).clamp_min(1e-8)
            q4 = torch.round(groups / s4[..., None]).clamp(-8, 7).to(torch.int8).reshape(nk, nk)
            packed4, sums4 = torch.ops.torchqat.pack_linear_w4a8(q4, s4)
            out[f"torchqat int4 (g{group}) weight-only"] = (  # float activations
                lambda p=packed4, s=s4: torch.ops.torchqat.linear_int4(xf, p, s, bias))
            out[f"torchqat w4a8 (g{group})"] = (  # uint8 activations, exact integer group sums
                lambda p=packed4, s=s4, w=sums4: torch.ops.torchqat.linear_w4a8(x_u8, x_zero, x_scale, p, s, w, bias))
    try:
        torch.backends.quantized.engine = "x86"
        qw = torch.quantize_per_channel(wf, w_scale.double(), torch.zeros(nk, dtype=torch.long), 0, torch.qint8)
        prepacked = torch.ops.quantized.linear_prepack(qw, bias)
        out["torch quantized.linear (x86)"] = lambda: torch.ops.quantized.linear(xq, prepacked, 0.1, 128)
    except (RuntimeError, AttributeError) as e:  # a torch without the quantized engine
        print(f"torch quantized linear unavailable: {e}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--ms", nargs="+", type=int, default=MS)
    parser.add_argument("--nks", nargs="+", type=int, default=NKS)
    parser.add_argument("--out", default="results/bench_linear_int8.json")
    args = parser.parse_args()
    print(f"kernels: {torchqat._C.active_isa()}")
    rows = []
    for threads in args.threads:
        for nk in args.nks:
            for m in args.ms:
                fns = cases(m, nk)
                secs = {name: median_seconds(fn, threads, args.min_run_time) for name, fn in fns.items()}
                ops = 2.0 * m * nk * nk
                base = secs["float32 F.linear"]
                peer = secs.get("torch quantized.linear (x86)")
                for name, s in secs.items():
                    rows.append(dict(threads=threads, m=m, nk=nk, impl=name, us=1e6 * s, gops=ops / s / 1e9,
                                     vs_float=base / s, vs_torch_q=(peer / s) if peer else float("nan")))
                print(f"t={threads} M={m} N=K={nk}: " + ", ".join(f"{n} {ops / s / 1e9:.1f}" for n, s in secs.items()),
                      flush=True)
    print_table(rows, [("threads", "threads", ""), ("M", "m", ""), ("N=K", "nk", ""), ("implementation", "impl", ""),
                       ("µs", "us", ".0f"), ("GOPS", "gops", ".1f"), ("speed-up vs float32", "vs_float", ".2f"),
                       ("vs torch quantized", "vs_torch_q", ".2f")])
    write_json(args.out, dict(machine=machine(), rows=rows))


if __name__ == "__main__":
    main()
