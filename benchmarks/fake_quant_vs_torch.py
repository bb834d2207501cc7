"""Forward+backward of torchqat.fake_quantize against ATen's fake-quant ops,
side by side in one run, with the machine's copy bandwidth for scale.

Bytes that fake quantization must move per float32 element, forward and
backward together: read x, write y, write the 1-bit mask (4 + 4 + 1/8), then
read grad_y, read the mask, write grad_x (4 + 1/8 + 4): 16.25 bytes.

    python benchmarks/fake_quant_vs_torch.py [--sizes 1M 16M] [--threads 1 2] [--allocator reuse]

Every op that returns a fresh 64 MB tensor pays for new pages under glibc's
default malloc (blocks over 32 MB are always mmap'ed and the kernel zeroes each
page on first touch); at 16M elements that costs more than the kernel itself,
for torch's ops and ours alike. `--allocator reuse` re-runs the script with
glibc told to keep freed memory (MALLOC_MMAP_MAX_=0, no trimming), as a
caching allocator (jemalloc, tcmalloc) would; it isolates the kernels.

Writes results/bench_fake_quant_<allocator>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as tb

import torchqat

BYTES_PER_ELEMENT = 4 + 4 + 1 / 8 + 4 + 1 / 8 + 4
SIZES = {"1M": 1 << 20, "16M": 1 << 24}
REUSE_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def reexec_with_reusing_malloc() -> None:
    """glibc reads these variables at start-up, so the process starts again."""
    if all(os.environ.get(k) == v for k, v in REUSE_ENV.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **REUSE_ENV})


def median_seconds(fn, threads: int, min_run_time: float) -> float:
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def copy_bandwidth(n: int, threads: int, min_run_time: float) -> float:
    src, dst = torch.randn(n), torch.empty(n)
    seconds = median_seconds(lambda: dst.copy_(src), threads, min_run_time)
    return 8 * n / seconds  # read + write


def saved_bytes(fn, x) -> int:
    """Bytes autograd keeps for the backward pass of fn(x)."""
    total = 0

    def pack(t):
        nonlocal total
        if t is not x:  # the input itself is not extra state
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


def cases(n: int):
    """(granularity, torchqat fn, torch fn) over x of n elements."""
    x_shape_pc = {64: (64, n // 64), 1024: (1024, n // 1024)}
    s1, z1 = torch.tensor([0.02]), torch.tensor([0], dtype=torch.int32)
    yield "per-tensor", (n,), (
        lambda x: torchqat.fake_quantize(x, s1, z1, -128, 127),
        lambda x: torch.fake_quantize_per_tensor_affine(x, s1, z1, -128, 127),
    )
    for channels, shape in x_shape_pc.items():
        s = torch.rand(channels) * 0.02 + 0.01
        z = torch.zeros(channels, dtype=torch.int32)
        yield f"per-channel ({channels})", shape, (
            lambda x, s=s, z=z: torchqat.fake_quantize(x, s, z, -128, 127, axis=0),
            lambda x, s=s, z=z: torch.fake_quantize_per_channel_affine(x, s, z, 0, -128, 127),
        )


def fwd_bwd(fn, x, grad):
    def run():
        (gx,) = torch.autograd.grad(fn(x), x, grad)
        return gx

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--allocator", choices=["default", "reuse"], default="default")
    parser.add_argument("--out", default=None, help="default: results/bench_fake_quant_<allocator>.json")
    args = parser.parse_args()
    if args.allocator == "reuse":
        reexec_with_reusing_malloc()
    print(f"allocator: {args.allocator}, kernels: {torchqat._C.active_isa()}")

    rows = []
    for threads in args.threads:
        for size_name in args.sizes:
            n = SIZES[size_name]
            copy_bw = copy_bandwidth(n, threads, args.min_run_time)
            for granularity, shape, (ours, theirs) in cases(n):
                x = torch.randn(shape).requires_grad_()
                grad = torch.randn(shape)
                t_ours = median_seconds(fwd_bwd(ours, x, grad), threads, args.min_run_time)
                t_torch = median_seconds(fwd_bwd(theirs, x, grad), threads, args.min_run_time)
                bw = BYTES_PER_ELEMENT * n / t_ours
                rows.append({
                    "threads": threads, "size": size_name, "granularity": granularity,
                    "torchqat_ms": t_ours * 1e3, "torch_ms": t_torch * 1e3,
                    "speedup_vs_torch": t_torch / t_ours,
                    "torchqat_GBps": bw / 1e9, "copy_GBps": copy_bw / 1e9,
                    "fraction_of_copy_bw": bw / copy_bw,
                    "saved_bytes_torchqat": saved_bytes(ours, x),
                    "saved_bytes_torch": saved_bytes(theirs, x),
                })
                r = rows[-1]
                print(f"{threads}T {size_name:>3} {granularity:<18} torchqat {r['torchqat_ms']:8.2f} ms  "
                      f"torch {r['torch_ms']:8.2f} ms  x{r['speedup_vs_torch']:.2f}  "
                      f"{r['torchqat_GBps']:.1f} GB/s = {100 * r['fraction_of_copy_bw']:.0f}% of copy", flush=True)

    print("\n| threads | size | granularity | torchqat ms | torch ms | speed-up | torchqat GB/s | copy GB/s | % of copy | saved state torchqat / torch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['size']} | {r['granularity']} | {r['torchqat_ms']:.2f} | {r['torch_ms']:.2f} | "
              f"{r['speedup_vs_torch']:.2f}x | {r['torchqat_GBps']:.1f} | {r['copy_GBps']:.1f} | "
              f"{100 * r['fraction_of_copy_bw']:.0f}% | {r['saved_bytes_torchqat'] / r['saved_bytes_torch']:.3f} |")

    out = Path(args.out or f"results/bench_fake_quant_{args.allocator}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "isa": torchqat._C.active_isa(), "torch": torch.__version__, "allocator": args.allocator,
            "bytes_per_element_counted": BYTES_PER_ELEMENT}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
