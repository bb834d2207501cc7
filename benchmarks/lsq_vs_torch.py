"""Forward+backward of torchqat.lsq_fake_quantize against ATen's learnable
fake-quant ops (torch._fake_quantize_learnable_per_tensor_affine /
_per_channel_affine), side by side in one run, with the peak memory each
adds while running.

    python benchmarks/lsq_vs_torch.py [--sizes 1M 16M] [--threads 1 2] [--allocator default|thp|reuse]

Timing takes the median of repeated runs. "Peak extra" is the resident
memory a fwd+bwd adds on top of its inputs (x, grad, parameters), measured
under glibc's default allocator (which returns large blocks to the system, so
the high-water mark sees every temporary): the output y and grad_x are the
least any implementation needs (2 x 4 bytes per element).
Writes results/bench_lsq_<allocator>.json and prints a markdown table.
"""

from __future__ import annotations

import torch

import torchqat
from bench_util import SIZES, machine, median_seconds, peak_extra_bytes, print_table, write_json, parse_args

QMIN, QMAX = -128, 127


def cases(n: int):
    """(granularity, shape, scale, zero_point, torchqat fn, torch fn)."""
    yield "per-tensor", (n,), 1, (
        lambda x, s, z: torchqat.lsq_fake_quantize(x, s, z, QMIN, QMAX, 1.0),
        lambda x, s, z: torch._fake_quantize_learnable_per_tensor_affine(x, s, z, QMIN, QMAX, 1.0),
    )
    for channels in (64, 1024):
        yield f"per-channel ({channels})", (channels, n // channels), channels, (
            lambda x, s, z: torchqat.lsq_fake_quantize(x, s, z, QMIN, QMAX, 1.0, axis=0),
            lambda x, s, z: torch._fake_quantize_learnable_per_channel_affine(x, s, z, 0, QMIN, QMAX, 1.0),
        )


def fwd_bwd(fn, x, scale, zp, grad):
    def run():
        return torch.autograd.grad(fn(x, scale, zp), (x, scale, zp), grad)

    return run


def main() -> None:
    args = parse_args(__doc__, "lsq")

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size_name in args.sizes:
            n = SIZES[size_name]
            for granularity, shape, channels, (ours, theirs) in cases(n):
                x = (torch.randn(shape) * 0.5).requires_grad_()
                grad = torch.randn(shape)
                scale = torch.full((channels,), 0.01).requires_grad_()
                zp = torch.zeros(channels).requires_grad_()
                run_ours, run_torch = fwd_bwd(ours, x, scale, zp, grad), fwd_bwd(theirs, x, scale, zp, grad)
                t_ours = median_seconds(run_ours, threads, args.min_run_time)
                t_torch = median_seconds(run_torch, threads, args.min_run_time)
                row = {
                    "threads": threads, "size": size_name, "granularity": granularity,
                    "torchqat_ms": t_ours * 1e3, "torch_ms": t_torch * 1e3, "speedup_vs_torch": t_torch / t_ours,
                    # The high-water mark only sees temporaries when freed memory goes back to the system.
                    "peak_extra_MB_torchqat": peak_extra_bytes(run_ours) / 2**20 if args.allocator != "reuse" else float("nan"),
                    "peak_extra_MB_torch": peak_extra_bytes(run_torch) / 2**20 if args.allocator != "reuse" else float("nan"),
                    "minimum_MB": 8 * n / 2**20,
                }
                rows.append(row)
                print(f"{threads}T {size_name:>3} {granularity:<18} torchqat {row['torchqat_ms']:8.2f} ms  "
                      f"torch {row['torch_ms']:8.2f} ms  x{row['speedup_vs_torch']:.2f}  peak extra "
                      f"{row['peak_extra_MB_torchqat']:.0f} / {row['peak_extra_MB_torch']:.0f} MB", flush=True)

    print_table(rows, [
        ("threads", "threads", "d"), ("size", "size", "s"), ("granularity", "granularity", "s"),
        ("torchqat ms", "torchqat_ms", ".2f"), ("torch ms", "torch_ms", ".2f"),
        ("speed-up", "speedup_vs_torch", ".2f"), ("peak extra MB torchqat", "peak_extra_MB_torchqat", ".0f"),
        ("peak extra MB torch", "peak_extra_MB_torch", ".0f"), ("y + grad_x MB", "minimum_MB", ".0f"),
    ])
    write_json(args.out,
               {"meta": {**machine(), "allocator": args.allocator}, "rows": rows})


if __name__ == "__main__":
    main()
