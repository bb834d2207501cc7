"""Training, evaluation and latency helpers shared by the end-to-end examples."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Iterable, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import torchqat


def batches(n: int, batch_size: int, shuffle: bool, generator=None) -> Iterable[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train(model: nn.Module, get_batch: Callable[[torch.Tensor], Tuple], n: int, epochs: float, batch_size: int,
          lr: float, desc: str, weight_decay: float = 5e-4, label_smoothing: float = 0.0,
          optimizer: str = "sgd", seed: int = 0, channels_last: bool = False) -> nn.Module:
    """``epochs`` (may be fractional) over n examples with a cosine learning
    rate; ``get_batch(indices)`` gives (inputs, labels), inputs a tensor or a
    dict of keyword inputs. ``channels_last`` trains a conv net in NHWC
    (oneDNN's faster layout on the CPU) and hands the model back in NCHW.
    Plain ``nn.Conv2d`` layers train small maps by torchqat's per-tap GEMMs
    (``fast_small_map_convs``; QAT convs always do)."""
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps = max(1, math.ceil(epochs * n / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    done = 0
    with torchqat.nn.fast_small_map_convs(model), \
            tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True) as bar:
        while done < steps:
            for idx in batches(n, batch_size, True, generator):
                x, y = get_batch(idx)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out = model(**x) if isinstance(x, dict) else model(x)
                logits = out.logits if hasattr(out, "logits") else out
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if done >= steps:
                    break
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return model


@torch.no_grad()
def predict(model: Callable, get_batch: Callable[[torch.Tensor], Tuple], n: int, batch_size: int,
            desc: str) -> torch.Tensor:
    """Logits of every example (eval mode for nn.Modules)."""
    if isinstance(model, nn.Module):
        model.eval()
    outs = []
    for idx in tqdm(list(batches(n, batch_size, False)), desc=desc, unit="batch", dynamic_ncols=True, leave=False):
        x, _ = get_batch(idx)
        out = model(**x) if isinstance(x, dict) else model(x)
        if isinstance(out, dict):
            out = out["logits"]
        outs.append(out.logits if hasattr(out, "logits") else out)
    return torch.cat(outs)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def agreement(logits: torch.Tensor, other: torch.Tensor) -> float:
    """Fraction of examples on which two models make the same top-1 decision."""
    return accuracy(logits, other.argmax(1))


@torch.no_grad()
def latency_ms(fn: Callable[[], object], min_seconds: float = 1.0, min_runs: int = 3) -> float:
    """Median wall time of fn() in milliseconds (after one warm-up call)."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)
