"""Observers against torch.ao's, side by side in one run:

* observation throughput (elements per second) of each observer on 1M-element
  activations;
* HistogramObserver calibration: 10 batches of 1M activations observed, then
  qparams chosen, timed end to end (median of 5 calibrations), with the quantization MSE each choice gives
  on the same data (int8 and int4, unsigned, post-ReLU-like heavy-tailed data);
* the fused observe + fake-quantize step (forward + backward) against
  torch.ao's FusedMovingAvgObsFakeQuantize.

    python benchmarks/observers_vs_torch.py [--threads 1 2]

Writes results/bench_observers.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.ao.quantization import observer as ao
from torch.ao.quantization.fake_quantize import FusedMovingAvgObsFakeQuantize

import torchqat
from bench_util import machine, median_seconds, print_table, write_json
from torchqat.observers import HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver

N = 1 << 20


def activations(batches: int, seed: int = 0) -> torch.Tensor:
    """Post-ReLU-like activations with a Student-t tail."""
    torch.manual_seed(seed)  # StudentT samples from the global generator
    body = torch.randn(batches, N)
    tail = torch.distributions.StudentT(2.5).sample((batches, N))
    return torch.relu(0.7 * body + 0.3 * tail)


def throughput_rows(threads: int, min_run_time: float) -> list[dict]:
    x = activations(1)[0]
    pairs = [
        ("MinMax", MinMaxObserver(bits=8, signed=False), ao.MinMaxObserver(dtype=torch.quint8)),
        ("MovingAverageMinMax", MovingAverageMinMaxObserver(bits=8, signed=False),
         ao.MovingAverageMinMaxObserver(dtype=torch.quint8)),
        ("MinMax per-channel (64)", MinMaxObserver(ch_axis=0, symmetric=True),
         ao.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)),
        ("Histogram", HistogramObserver(bits=8, signed=False), ao.HistogramObserver(dtype=torch.quint8)),
    ]
    rows = []
    for name, ours, theirs in pairs:
        data = x.reshape(64, -1) if "per-channel" in name else x
        t_ours = median_seconds(lambda: ours(data), threads, min_run_time)
        t_theirs = median_seconds(lambda: theirs(data), threads, min_run_time)
        rows.append({"threads": threads, "observer": name, "torchqat_Melem_s": N / t_ours / 1e6,
                     "torch_Melem_s": N / t_theirs / 1e6, "speedup": t_theirs / t_ours})
    return rows


def quant_mse(x, scale, zp, qmin, qmax) -> float:
    y = torchqat.fake_quantize(x, scale.float().reshape(1), zp.int().reshape(1), qmin, qmax)
    return float(((y - x) ** 2).mean())


def calibration_rows(threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    data = activations(10, seed=1)
    flat = data.flatten()
    rows = []
    for bits in (8, 4):
        qmin, qmax = 0, 2**bits - 1

        def calibrate(make_observer, repeats=5):
            """Median time of `repeats` calibrations, each with a fresh observer."""
            times = []
            for _ in range(repeats):
                obs = make_observer()
                start = time.perf_counter()
                for batch in data:
                    obs(batch)
                scale, zp = obs.calculate_qparams()
                times.append(time.perf_counter() - start)
            return statistics.median(times), quant_mse(flat, scale, zp, qmin, qmax)

        t_torch, e_torch = calibrate(lambda: ao.HistogramObserver(dtype=torch.quint8, quant_min=qmin, quant_max=qmax))
        for method in ("mse", "percentile", "entropy"):
            t, e = calibrate(lambda: HistogramObserver(method=method, bits=bits, signed=False))
            rows.append({"threads": threads, "bits": bits, "method": method, "torchqat_s": t, "torch_s": t_torch,
                         "speedup": t_torch / t, "torchqat_mse": e, "torch_mse": e_torch,
                         "mse_ratio": e / e_torch})
    return rows


def fused_rows(threads: int, min_run_time: float) -> list[dict]:
    x = activations(1)[0].reshape(1024, -1).requires_grad_()
    grad = torch.randn_like(x)
    lo, hi = torch.full((), float("inf")), torch.full((), float("-inf"))
    ours = lambda: torch.autograd.grad(  # noqa: E731
        torchqat.observe_fake_quantize(x, lo, hi, 0, 255, False, 0.01), x, grad)
    fq = FusedMovingAvgObsFakeQuantize(quant_min=0, quant_max=255, dtype=torch.quint8)
    theirs = lambda: torch.autograd.grad(fq(x), x, grad)  # noqa: E731
    t_ours = median_seconds(ours, threads, min_run_time)
    t_theirs = median_seconds(theirs, threads, min_run_time)
    return [{"threads": threads, "torchqat_ms": t_ours * 1e3, "torch_ms": t_theirs * 1e3,
             "speedup": t_theirs / t_ours}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--out", default="results/bench_observers.json")
    args = parser.parse_args()
    throughput, calibration, fused = [], [], []
    for threads in args.threads:
        throughput += throughput_rows(threads, args.min_run_time)
        calibration += calibration_rows(threads)
        fused += fused_rows(threads, args.min_run_time)
    print("\nObservation throughput, 1M elements per call")
    print_table(throughput, [("threads", "threads", "d"), ("observer", "observer", "s"),
                             ("torchqat Melem/s", "torchqat_Melem_s", ".0f"), ("torch Melem/s", "torch_Melem_s", ".0f"),
                             ("speed-up", "speedup", ".1f")])
    print("\nHistogram calibration, 10 x 1M activations (torch: ao.HistogramObserver)")
    print_table(calibration, [("threads", "threads", "d"), ("bits", "bits", "d"), ("method", "method", "s"),
                              ("torchqat s", "torchqat_s", ".3f"), ("torch s", "torch_s", ".3f"),
                              ("speed-up", "speedup", ".1f"), ("torchqat MSE", "torchqat_mse", ".3e"),
                              ("torch MSE", "torch_mse", ".3e"), ("MSE ratio", "mse_ratio", ".3f")])
    print("\nFused observe + fake-quantize, fwd+bwd on 1M (torch: FusedMovingAvgObsFakeQuantize)")
    print_table(fused, [("threads", "threads", "d"), ("torchqat ms", "torchqat_ms", ".2f"),
                        ("torch ms", "torch_ms", ".2f"), ("speed-up", "speedup", ".2f")])
    write_json(args.out, {"meta": machine(), "throughput": throughput, "calibration": calibration, "fused": fused})


if __name__ == "__main__":
    main()
