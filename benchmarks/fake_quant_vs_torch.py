"""Forward+backward of torchqat.fake_quantize against ATen's fake-quant ops,
side by side in one run, with the machine's copy bandwidth for scale.

Bytes that fake quantization must move per float32 element, forward and
backward together: read x, write y, write the 1-bit mask (4 + 4 + 1/8), then
read grad_y, read the mask, write grad_x (4 + 1/8 + 4): 16.25 bytes.

    python benchmarks/fake_quant_vs_torch.py [--sizes 1M 16M] [--threads 1 2] [--allocator default|thp|reuse]

Every op that returns a fresh 64 MB tensor pays for new pages under glibc's
default malloc (blocks over 32 MB are always mmap'ed and the kernel zeroes each
page on first touch); at 16M elements that costs more than the kernel itself,
for torch's ops and ours alike. `--allocator reuse` re-runs the script with
glibc told to keep freed memory (MALLOC_MMAP_MAX_=0, no trimming), as a
caching allocator (jemalloc, tcmalloc) would; it isolates the kernels.

Writes results/bench_fake_quant_<allocator>.json and prints a markdown table.
"""

from __future__ import annotations

import torch

import torchqat
from bench_util import SIZES, copy_bandwidth, machine, median_seconds, print_table, write_json, parse_args

BYTES_PER_ELEMENT = 4 + 4 + 1 / 8 + 4 + 1 / 8 + 4
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
    args = parse_args(__doc__, "fake_quant")

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

    print_table(rows, [
        ("threads", "threads", "d"), ("size", "size", "s"), ("granularity", "granularity", "s"),
        ("torchqat ms", "torchqat_ms", ".2f"), ("torch ms", "torch_ms", ".2f"),
        ("speed-up", "speedup_vs_torch", ".2f"), ("torchqat GB/s", "torchqat_GBps", ".1f"),
        ("copy GB/s", "copy_GBps", ".1f"), ("fraction of copy", "fraction_of_copy_bw", ".2f"),
        ("saved bytes torchqat", "saved_bytes_torchqat", "d"), ("saved bytes torch", "saved_bytes_torch", "d"),
    ])
    meta = {**machine(), "allocator": args.allocator, "bytes_per_element_counted": BYTES_PER_ELEMENT}
    write_json(args.out, {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
