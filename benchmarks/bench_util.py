"""Helpers shared by the Python benchmarks: timing, allocator set-up, peak memory, output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as tb

import torchqat

# How fresh large tensors get their memory, chosen with --allocator:
#   default: glibc as it comes: blocks over 32 MB are mmap'ed anew, the kernel
#            zeroes every 4 KB page on first touch;
#   thp:     PyTorch's own THP_MEM_ALLOC_ENABLE=1: large blocks get 2 MB pages;
#   reuse:   glibc keeps freed memory (as jemalloc or tcmalloc would).
ALLOCATORS = {
    "default": {},
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"},
    "reuse": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)},
}


SIZES = {"1M": 1 << 20, "16M": 1 << 24}


def parse_args(doc: str, name: str) -> argparse.Namespace:
    """The options every comparison script takes; switches to the chosen allocator."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--allocator", choices=list(ALLOCATORS), default="default", help="see bench_util.ALLOCATORS")
    parser.add_argument("--out", default=None, help=f"default: results/bench_{name}_<allocator>.json")
    args = parser.parse_args()
    use_allocator(args.allocator)
    args.out = args.out or f"results/bench_{name}_{args.allocator}.json"
    print(f"allocator: {args.allocator}, kernels: {torchqat._C.active_isa()}")
    return args


def median_seconds(fn, threads: int, min_run_time: float) -> float:
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def copy_bandwidth(n: int, threads: int, min_run_time: float) -> float:
    """Bytes per second of dst.copy_(src) over n float32 elements (read + write)."""
    src, dst = torch.randn(n), torch.empty(n)
    return 8 * n / median_seconds(lambda: dst.copy_(src), threads, min_run_time)


def use_allocator(name: str) -> None:
    """Start the process again with the allocator's environment (read at start-up)."""
    env = ALLOCATORS[name]
    if all(os.environ.get(k) == v for k, v in env.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **env})


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def peak_extra_bytes(fn) -> int:
    """Peak resident memory fn() adds above what is resident before it (Linux:
    resets the high-water mark through /proc/self/clear_refs). Meaningful under
    glibc's default allocator, which returns large blocks to the system."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def machine() -> dict:
    return {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "isa": torchqat._C.active_isa(), "torch": torch.__version__}


def write_json(path: str, payload: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Markdown table: columns are (header, key, format)."""
    print("\n| " + " | ".join(h for h, _, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(format(r[k], f) for _, k, f in columns) + " |")
