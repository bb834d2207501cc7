"""Observers: running statistics of a tensor from which quantization parameters
are chosen. The statistics are computed by ``torch.ops.torchqat.observe_minmax``
(C++); the state lives in buffers, so ``state_dict`` saves and restores it.

Every observer takes ``bits``, ``signed``, ``symmetric``, ``narrow_range`` and a
granularity: per tensor (default), per channel (``ch_axis``) or per group along
the last dimension (``group_size``). ``calculate_qparams()`` returns
``(scale, zero_point)`` ready for :func:`torchqat.fake_quantize` /
:func:`torchqat.lsq_fake_quantize`; the range always contains zero.

Non-finite values (NaN, +-Inf) never enter the statistics: they are skipped,
counted in ``num_nonfinite`` and reported by one warning per observer.
"""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from ._fake_quant import quant_range
from ._lsq import qparams_from_range

__all__ = ["HistogramObserver", "MinMaxObserver", "MovingAverageMinMaxObserver", "observe_fake_quantize"]


class _MinMaxBase(nn.Module):
    def __init__(
        self,
        bits: int = 8,
        signed: bool = True,
        symmetric: bool = False,
        narrow_range: bool = False,
        ch_axis: Optional[int] = None,
        group_size: Optional[int] = None,
    ):
        super().__init__()
        if ch_axis is not None and group_size is not None:
            raise ValueError("give ch_axis (per-channel) or group_size (per-group), not both")
        self.quant_min, self.quant_max = quant_range(bits, signed, narrow_range)
        self.bits, self.signed, self.symmetric, self.narrow_range = bits, signed, symmetric, narrow_range
        self.ch_axis, self.group_size = ch_axis, group_size
        per_tensor = ch_axis is None and group_size is None
        # Per-tensor statistics are 0-d, like torch.ao's; per-channel / per-group
        # buffers take their shape at the first observation (or from a state_dict).
        shape = () if per_tensor else (0,)
        self.register_buffer("min_val", torch.full(shape, float("inf")))
        self.register_buffer("max_val", torch.full(shape, float("-inf")))
        self.register_buffer("num_nonfinite", torch.zeros((), dtype=torch.int64))
        self._warned_nonfinite = False

    def extra_repr(self) -> str:
        granularity = (
            f"ch_axis={self.ch_axis}" if self.ch_axis is not None
            else f"group_size={self.group_size}" if self.group_size is not None else "per-tensor"
        )
        return (f"bits={self.bits}, signed={self.signed}, symmetric={self.symmetric}, "
                f"narrow_range={self.narrow_range}, {granularity}")

    def _batch_minmax(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lo, hi, bad = torch.ops.torchqat.observe_minmax(x.detach(), self.ch_axis, self.group_size)
        return lo, hi, bad

    def _combine(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Folds x into the statistics; returns x unchanged."""
        if x.numel() == 0:
            return x
        lo, hi, bad = self._batch_minmax(x)
        bad_total = bad.sum()
        self.num_nonfinite += bad_total.to(self.num_nonfinite.device)
        if not self._warned_nonfinite and x.device.type == "cpu" and int(bad_total) > 0:
            self._warned_nonfinite = True
            warnings.warn(f"{type(self).__name__}: skipped {int(bad_total)} non-finite values "
                          "(NaN/Inf); they are counted in num_nonfinite and never enter the range")
        if self.min_val.shape != lo.shape:
            if self.min_val.numel() != 0:
                raise ValueError(f"{type(self).__name__}: statistics have shape {tuple(self.min_val.shape)} "
                                 f"but this input gives {tuple(lo.shape)}")
            self.min_val = torch.full_like(lo, float("inf"))
            self.max_val = torch.full_like(hi, float("-inf"))
        self._combine(lo.to(self.min_val.device), hi.to(self.max_val.device))
        return x

    def has_observed(self) -> bool:
        """Whether every statistic has seen at least one finite value."""
        return self.min_val.numel() > 0 and bool((self.min_val <= self.max_val).all())

    def calculate_qparams(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(scale float32, zero_point int32), per tensor shaped (1,), else like the statistics."""
        if not self.has_observed():
            raise RuntimeError(f"{type(self).__name__}.calculate_qparams() called before any (finite) "
                               "observation: run data through the observer first")
        lo, hi = self.min_val, self.max_val
        if lo.dim() == 0:
            lo, hi = lo.reshape(1), hi.reshape(1)
        return qparams_from_range(lo, hi, self.quant_min, self.quant_max, self.symmetric)

    @torch.no_grad()
    def sync(self, group=None) -> None:
        """All-reduce the statistics across the ranks of a torch.distributed
        process group, so every rank ends with identical qparams (no-op when
        torch.distributed is not initialised)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        dist.all_reduce(self.min_val, op=dist.ReduceOp.MIN, group=group)
        dist.all_reduce(self.max_val, op=dist.ReduceOp.MAX, group=group)
        dist.all_reduce(self.num_nonfinite, op=dist.ReduceOp.SUM, group=group)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Per-channel statistics are shaped by the data: take the saved shape.
        for name in ("min_val", "max_val"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class MinMaxObserver(_MinMaxBase):
    """Running minimum and maximum over every observed batch (as torch.ao's
    MinMaxObserver / PerChannelMinMaxObserver)."""

    def _combine(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        torch.minimum(self.min_val, lo, out=self.min_val)
        torch.maximum(self.max_val, hi, out=self.max_val)


class MovingAverageMinMaxObserver(_MinMaxBase):
    """Exponential moving average of each batch's min and max (as torch.ao's
    MovingAverage(PerChannel)MinMaxObserver): the first batch sets the range,
    then ``range += averaging_constant * (batch_range - range)``. A channel
    with no finite value in a batch keeps its range."""

    def __init__(self, averaging_constant: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = averaging_constant

    def _combine(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        seen = lo <= hi  # the batch had finite values for this statistic
        first = torch.isinf(self.min_val) & seen
        c = self.averaging_constant
        new_lo = torch.where(first, lo, self.min_val + c * (lo - self.min_val))
        new_hi = torch.where(first, hi, self.max_val + c * (hi - self.max_val))
        self.min_val.copy_(torch.where(seen, new_lo, self.min_val))
        self.max_val.copy_(torch.where(seen, new_hi, self.max_val))


class HistogramObserver(nn.Module):
    """A running histogram of the observed values and three ways to choose the
    clipping range from it (C++: ``histogram_observe``, ``histogram_clip_range``):

    * ``"percentile"``: the smallest range holding ``percentile`` % of |x|
      (symmetric) or between the (100 - p)/2 and (100 + p)/2 percentiles of x;
    * ``"mse"``: the range with the least expected squared quantization error
      (clipping error plus step^2/12 rounding noise) for the target bit width;
    * ``"entropy"``: TensorRT's KL-divergence calibration on |x|.

    The histogram's range grows without losing counts: a wider range merges
    whole bins (bin width doubled as often as needed, edges kept aligned).
    The histogram lives on the CPU (a calibration-time observer: CUDA inputs
    are copied over, a host synchronisation).
    """

    def __init__(self, bins: int = 2048, method: str = "percentile", percentile: float = 99.99,
                 bits: int = 8, signed: bool = True, symmetric: bool = False, narrow_range: bool = False):
        super().__init__()
        if method not in ("percentile", "mse", "entropy"):
            raise ValueError(f'method must be "percentile", "mse" or "entropy", got "{method}"')
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.quant_min, self.quant_max = quant_range(bits, signed, narrow_range)
        self.bits, self.signed, self.symmetric, self.narrow_range = bits, signed, symmetric, narrow_range
        self.method, self.percentile = method, percentile
        self.register_buffer("counts", torch.zeros(bins, dtype=torch.int64))
        self.register_buffer("range", torch.tensor([float("inf"), float("-inf")], dtype=torch.float64))
        self.register_buffer("num_nonfinite", torch.zeros((), dtype=torch.int64))
        self._warned_nonfinite = False

    def extra_repr(self) -> str:
        return (f"bins={self.counts.numel()}, method={self.method!r}, bits={self.bits}, "
                f"signed={self.signed}, symmetric={self.symmetric}")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Folds x into the histogram; returns x unchanged."""
        if x.numel() == 0:
            return x
        bad = torch.ops.torchqat.histogram_observe(x.detach().cpu(), self.counts, self.range)
        self.num_nonfinite += bad
        if not self._warned_nonfinite and int(bad) > 0:
            self._warned_nonfinite = True
            warnings.warn(f"HistogramObserver: skipped {int(bad)} non-finite values (NaN/Inf); "
                          "they are counted in num_nonfinite and never enter the histogram")
        return x

    def clip_range(self) -> Tuple[float, float]:
        """The chosen clipping range (lo <= 0 <= hi)."""
        if not bool(self.range[0] < self.range[1]):
            raise RuntimeError("HistogramObserver.calculate_qparams() called before any (finite) "
                               "observation: run data through the observer first")
        clip = torch.ops.torchqat.histogram_clip_range(self.counts, self.range, self.method, self.quant_min,
                                                       self.quant_max, self.symmetric, self.percentile)
        return float(clip[0]), float(clip[1])

    def calculate_qparams(self) -> Tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.clip_range()
        return qparams_from_range(torch.tensor([lo]), torch.tensor([hi]), self.quant_min, self.quant_max,
                                  self.symmetric)

    @torch.no_grad()
    def sync(self, group=None) -> None:
        """Sum the histograms of every rank (torch.distributed), so all ranks end
        with the same histogram and qparams. Ranks' bins rarely align, so each
        rank's counts are re-binned, bin centre by bin centre, onto the common
        range: totals stay exact, positions move by at most one bin."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size(group)
        ranges = [torch.empty_like(self.range) for _ in range(world)]
        counts = [torch.empty_like(self.counts) for _ in range(world)]
        dist.all_gather(ranges, self.range, group=group)
        dist.all_gather(counts, self.counts, group=group)
        seen = [(r, c) for r, c in zip(ranges, counts) if bool(r[0] < r[1])]
        if not seen:
            return
        lo = min(float(r[0]) for r, _ in seen)
        hi = max(float(r[1]) for r, _ in seen)
        bins = self.counts.numel()
        merged = torch.zeros(bins, dtype=torch.int64)
        for r, c in seen:  # rank order: the same result on every rank
            centres = r[0] + (torch.arange(bins, dtype=torch.float64) + 0.5) * (r[1] - r[0]) / bins
            target = ((centres - lo) / (hi - lo) * bins).long().clamp(0, bins - 1)
            merged.index_add_(0, target, c)
        self.counts.copy_(merged)
        self.range.copy_(torch.tensor([lo, hi], dtype=torch.float64))
        dist.all_reduce(self.num_nonfinite, group=group)


def observe_fake_quantize(
    x: torch.Tensor,
    min_val: torch.Tensor,
    max_val: torch.Tensor,
    quant_min: int,
    quant_max: int,
    symmetric: bool = False,
    averaging_constant: Optional[float] = None,
    observe: bool = True,
    fake_quant: bool = True,
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
) -> torch.Tensor:
    """Observe and fake-quantize in one op, without host synchronisation.

    Folds the batch's finite min/max into ``min_val`` / ``max_val`` in place
    (float32, one value per statistic of the granularity; start them at
    +inf / -inf): a running min/max, or with ``averaging_constant`` a moving
    average as :class:`MovingAverageMinMaxObserver`. Then derives
    ``(scale, zero_point)`` from the range on the device (as
    ``calculate_qparams()``) and returns :func:`torchqat.fake_quantize` of
    ``x`` with a straight-through gradient. ``observe=False`` freezes the
    range; ``fake_quant=False`` returns ``x`` (gradient passed through).
    """
    return torch.ops.torchqat.observe_fake_quantize(
        x, min_val, max_val, quant_min, quant_max, symmetric, averaging_constant, observe, fake_quant, axis, group_size
    )
