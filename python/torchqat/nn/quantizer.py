"""``Quantizer``: an observer, a fake quantizer and (for LSQ) learned qparams
for one tensor, with the switches a QAT schedule needs."""

from __future__ import annotations

import contextlib
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from .._fake_quant import fake_quantize, fake_quantize_fp8
from .._layout import in_memory_order, keeping_layout
from .._lsq import lsq_fake_quantize, qparams_from_range
from ..observers import HistogramObserver
from ..qconfig import QuantSpec

_FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}
_EPS = torch.finfo(torch.float32).eps


class Quantizer(nn.Module):
    """Fake-quantizes one tensor as its :class:`~torchqat.QuantSpec` says.

    ``stat_shape`` is the shape of its statistics and qparams: ``(1,)`` per
    tensor, ``(channels,)`` per channel (``axis`` 0 of the tensor it sees), or
    ``(rows, groups)`` per group along the last dimension of a 2-D tensor.

    Switches (saved in ``state_dict``): ``fake_quant_enabled`` (off: returns its
    input), ``observer_enabled`` (off: the range is frozen). LSQ / LSQ+
    quantizers hold ``scale`` (and for LSQ+ ``zero_point``) as ``nn.Parameter``\\ s,
    initialised from the observed range at the first step that fake-quantizes
    (so a ``torchqat.calibrate`` pass beforehand chooses the start).

    STE activation quantizers run the fused ``observe_fake_quantize`` op: one
    pass, no host synchronisation.
    """

    def __init__(self, spec: QuantSpec, stat_shape: Tuple[int, ...] = (1,), name: str = ""):
        super().__init__()
        self.spec = spec
        self.name = name  # the layer path, for messages
        self.stat_shape = tuple(stat_shape)
        self.quant_min, self.quant_max = spec.quant_range
        self.axis = 0 if spec.granularity == "per_channel" else None
        self.group_size = spec.group_size
        self.fake_quant_enabled = True
        self.observer_enabled = True
        self.observed = False  # min_val / max_val hold a range
        self.initialised = False  # learned qparams set (LSQ / LSQ+)
        self.register_buffer("min_val", torch.full(self.stat_shape, float("inf")))
        self.register_buffer("max_val", torch.full(self.stat_shape, float("-inf")))
        self.histogram = None
        if spec.observer == "histogram":
            self.histogram = HistogramObserver(method=spec.histogram_method, bits=spec.bits, signed=spec.signed,
                                               symmetric=spec.symmetric, narrow_range=spec.narrow_range)
        self.learned = spec.estimator in ("lsq", "lsq+")
        if self.learned:
            self.scale = nn.Parameter(torch.ones(self.stat_shape))
            zero = torch.zeros(self.stat_shape)
            if spec.estimator == "lsq+":
                self.zero_point = nn.Parameter(zero)
            else:
                self.register_buffer("zero_point", zero)

    # ---- state -------------------------------------------------------------
    def get_extra_state(self):
        return {"fake_quant_enabled": self.fake_quant_enabled, "observer_enabled": self.observer_enabled,
                "observed": self.observed, "initialised": self.initialised}

    def set_extra_state(self, state):
        self.fake_quant_enabled = bool(state["fake_quant_enabled"])
        self.observer_enabled = bool(state["observer_enabled"])
        self.observed = bool(state["observed"])
        self.initialised = bool(state["initialised"])

    def extra_repr(self) -> str:
        switches = f"fake_quant={'on' if self.fake_quant_enabled else 'off'}, " \
                   f"observer={'on' if self.observer_enabled else 'off'}"
        return f"{self.spec.describe()}, observer={self.spec.observer}, {switches}"

    # ---- forward -----------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Observers and the fused observe-and-quantize op see a channels-last
        # tensor's NHWC view too (the quantizer's axis is 0, the same on it).
        return keeping_layout(lambda t, _: self._forward(t), x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.fp8:
            return self._forward_fp8(x)
        if self.learned:
            return self._forward_learned(x)
        if self.histogram is not None:
            return self._forward_histogram(x)
        if self.spec.observer == "current":
            if self.observer_enabled:
                self._observe(x)
            return self._fake_quantize_from_range(x) if self.fake_quant_enabled else x
        if x.numel() > 0 and self.observer_enabled:
            self.observed = True
        elif self.fake_quant_enabled:
            self._require_observed()
        c = self.spec.averaging_constant if self.spec.observer == "moving_average" else None
        return torch.ops.torchqat.observe_fake_quantize(
            x, self.min_val, self.max_val, self.quant_min, self.quant_max, self.spec.symmetric, c,
            self.observer_enabled, self.fake_quant_enabled, self.axis, self.group_size)

    def can_fold(self) -> bool:
        """Whether forward_folded applies: symmetric signed integer weights,
        per output channel, range of the current tensor, STE."""
        spec = self.spec
        return (spec.fp8 is None and not self.learned and spec.observer == "current" and spec.symmetric
                and spec.signed and spec.granularity == "per_channel")

    def forward_folded(self, w: torch.Tensor, channel_scale: torch.Tensor):
        """``Q(w * c) / c`` for a positive-or-negative per-output-channel
        ``c`` (BatchNorm's gamma / sigma), without forming ``w * c``: the
        range of ``w * c`` is ``c`` times that of ``w`` (kept in min_val /
        max_val), and quantizing ``w`` with step ``scale / |c|`` rounds
        ``w * |c| / scale``, the same grid up to the float rounding of that
        product. ``c`` gets no gradient here (batch normalisation after the
        convolution is invariant to it). Returns (tensor, replay)."""
        c = channel_scale.detach().reshape(-1)
        if self.observer_enabled or not self.observed:  # a frozen range needs no pass over w
            with torch.no_grad():
                lo, hi, _ = torch.ops.torchqat.observe_minmax(in_memory_order(w.detach()), 0, None)
                self.min_val.copy_(torch.minimum(lo * c, hi * c))
                self.max_val.copy_(torch.maximum(lo * c, hi * c))
            self.observed = True
        if not self.fake_quant_enabled:
            return w, None
        scale, zero_point = self.qparams()
        step = scale / c.abs().clamp_min(_EPS)
        qmin, qmax = self.quant_min, self.quant_max
        w_detached = w.detach()
        return (fake_quantize(w, step, zero_point, qmin, qmax, 0),
                lambda: fake_quantize(w_detached, step, zero_point, qmin, qmax, 0))

    def replay(self, x) -> Optional[Callable[[], torch.Tensor]]:
        """A function that fake-quantizes ``x`` (a tensor, or a function that
        recomputes it) again exactly as the forward just did (the qparams in
        effect now are captured), or None when the quantizer passes ``x``
        through. Layers use it to keep ``x`` rather than the quantized copy for
        backward (see ``recompute_saved``)."""
        if not self.fake_quant_enabled or (self.learned and not self.initialised):
            return None
        scale, zero_point = self.qparams()
        source = x if callable(x) else (lambda: x)
        axis, group = self.axis, self.group_size
        if self.spec.fp8:
            fmt = self.spec.fp8
            return lambda: fake_quantize_fp8(source(), scale, fmt, axis, group)
        qmin, qmax = self.quant_min, self.quant_max
        return lambda: fake_quantize(source(), scale, zero_point, qmin, qmax, axis, group)

    def _observe(self, x: torch.Tensor) -> None:
        """Fold x's range into min_val / max_val as the spec's observer says."""
        if x.numel() == 0:
            return
        with torch.no_grad():
            lo, hi, _ = torch.ops.torchqat.observe_minmax(x.detach(), self.axis, self.group_size)
            lo, hi = lo.reshape(self.stat_shape), hi.reshape(self.stat_shape)
            if self.spec.observer == "current" or not self.observed:
                self.min_val.copy_(lo)
                self.max_val.copy_(hi)
            elif self.spec.observer == "minmax":
                torch.minimum(self.min_val, lo, out=self.min_val)
                torch.maximum(self.max_val, hi, out=self.max_val)
            else:  # moving average, finite batches only
                c = self.spec.averaging_constant
                ok = lo <= hi
                self.min_val.copy_(torch.where(ok, self.min_val + c * (lo - self.min_val), self.min_val))
                self.max_val.copy_(torch.where(ok, self.max_val + c * (hi - self.max_val), self.max_val))
        self.observed = True

    def _require_observed(self) -> None:
        if not self.observed:
            raise RuntimeError(
                f"torchqat: quantizer '{self.name or '?'}' has never seen data, so it has no range: run data "
                "through the model with its observer on (training, or torchqat.calibrate) first")

    def _fake_quantize_from_range(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero_point = self.qparams()
        return fake_quantize(x, scale, zero_point, self.quant_min, self.quant_max, self.axis, self.group_size)

    def _forward_histogram(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer_enabled and x.numel() > 0:
            self.histogram(x)
            lo, hi = self.histogram.clip_range()
            self.min_val.fill_(lo)
            self.max_val.fill_(hi)
            self.observed = True
        return self._fake_quantize_from_range(x) if self.fake_quant_enabled else x

    def _forward_learned(self, x: torch.Tensor) -> torch.Tensor:
        if not self.initialised:
            # Until its first quantized step the quantizer only observes
            # (calibration); that step starts the learned qparams from the range.
            if self.observer_enabled or not self.observed:
                self._observe(x)
            if not self.fake_quant_enabled:
                return x
            self.initialise_from_range()
        elif not self.fake_quant_enabled:
            return x
        with torch.no_grad():
            self.scale.clamp_(min=_EPS)  # a learned step must stay positive
        return lsq_fake_quantize(x, self.scale, self.zero_point, self.quant_min, self.quant_max, None,
                                 self.axis, self.group_size)

    def _forward_fp8(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer_enabled:
            self._observe(x)
        if not self.fake_quant_enabled:
            return x
        scale, _ = self.qparams()
        return fake_quantize_fp8(x, scale, self.spec.fp8, self.axis, self.group_size)

    # ---- qparams -----------------------------------------------------------
    @torch.no_grad()
    def initialise_from_range(self) -> None:
        """Set the learned scale (and LSQ+ zero point) from the observed range."""
        self._require_observed()
        if self.spec.estimator == "lsq+":
            scale, zero_point = qparams_from_range(self.min_val, self.max_val, self.quant_min, self.quant_max,
                                                   symmetric=False)
            self.zero_point.copy_(zero_point.float())
        else:  # zero point 0: the largest magnitude maps to quant_max
            amax = torch.maximum(-self.min_val, self.max_val).clamp_min(0)
            scale = amax / self.quant_max
        self.scale.copy_(scale.clamp_min(_EPS))
        self.initialised = True

    def qparams(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The (scale, zero_point) this quantizer applies now (zero_point is
        None for FP8); shaped ``stat_shape``."""
        self._require_observed()
        if self.spec.fp8:
            amax = torch.maximum(-self.min_val, self.max_val).clamp_min(_EPS)
            return amax / _FP8_MAX[self.spec.fp8], None
        if self.learned and self.initialised:
            zp = self.zero_point.detach().round().clamp(self.quant_min, self.quant_max).to(torch.int32)
            return self.scale.detach().clamp_min(_EPS), zp
        return qparams_from_range(self.min_val, self.max_val, self.quant_min, self.quant_max, self.spec.symmetric)


def recompute_saved(pairs):
    """Inside this context, autograd saves, for each ``(quantized, replay)``
    pair, nothing but ``replay`` (which holds the quantizer's input) in place
    of the quantized tensor, and rebuilds the quantized tensor when backward
    needs it. The input is usually alive anyway (saved by the layer before),
    so a quantized layer keeps as much activation memory as the float layer,
    for one elementwise pass more in backward."""
    pairs = [(q, r) for q, r in pairs if r is not None]
    if not pairs or not torch.is_grad_enabled():
        return contextlib.nullcontext()

    # Autograd may save a view of the quantized tensor (F.linear flattens a
    # 3-D input): match by storage and rebuild the same view. The hooks hold
    # no reference to the quantized tensors (saved variables keep the hooks).
    recipes = [(q.untyped_storage().data_ptr(), tuple(q.shape), q.stride(), replay) for q, replay in pairs]

    def pack(t):
        if t.device.type == "meta" or t.layout != torch.strided:
            return t
        ptr = t.untyped_storage().data_ptr()
        for storage, q_shape, q_stride, replay in recipes:
            if ptr == storage:
                return (replay, q_shape, q_stride, tuple(t.shape), t.stride(), t.storage_offset())
        return t

    def unpack(saved):
        if not isinstance(saved, tuple):
            return saved
        replay, q_shape, q_stride, shape, stride, offset = saved
        with torch.no_grad():
            full = replay()
            if full.stride() != q_stride:
                full = torch.empty_strided(q_shape, q_stride, dtype=full.dtype, device=full.device).copy_(full)
            return full.as_strided(shape, stride, offset)

    return torch.autograd.graph.saved_tensors_hooks(pack, unpack)
