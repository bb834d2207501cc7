"""Conv-BN(-ReLU) for training, with BatchNorm folded into the weight that is
fake-quantized (Jacob et al. 2018, Krishnamoorthi 2018).

The weight is scaled by ``gamma / sqrt(running_var + eps)`` before the
weight quantizer, so the quantizer sees the weight that will be deployed. In
training the convolution's output is scaled back and BatchNorm normalises it
with the batch's statistics (and updates its running ones); in eval, or once
the statistics are frozen, BatchNorm uses its running statistics and the
layer computes exactly the folded convolution::

    y = conv(x, Q(w * gamma / sigma)) + (b - mean) * gamma / sigma + beta
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..qconfig import QuantSpec
from .modules import QuantConv1d, QuantConv2d
from .quantizer import recompute_saved


class _ConvBnMixin:
    bn: nn.modules.batchnorm._BatchNorm

    @classmethod
    def from_float(cls, conv, bn, weight_spec: Optional[QuantSpec], act_spec: Optional[QuantSpec],
                   name: str = "", relu: bool = False, freeze_bn_after: Optional[int] = None):
        if conv.out_channels != bn.num_features:
            raise ValueError(f"torchqat: '{name}': BatchNorm has {bn.num_features} features but the conv has "
                             f"{conv.out_channels} output channels")
        if not bn.track_running_stats:
            raise ValueError(f"torchqat: '{name}': Conv-BN folding needs a BatchNorm that tracks running "
                             "statistics")
        new = super().from_float(conv, weight_spec, act_spec, name, relu)
        new.bn = bn
        new.bn_frozen = False
        new.freeze_bn_after = freeze_bn_after
        new.train_steps = 0
        return new

    def get_extra_state(self):
        return {"bn_frozen": self.bn_frozen, "train_steps": self.train_steps}

    def set_extra_state(self, state):
        self.bn_frozen = bool(state["bn_frozen"])
        self.train_steps = int(state["train_steps"])

    def bn_scale(self) -> torch.Tensor:
        """gamma / sqrt(running_var + eps), per output channel."""
        bn = self.bn
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        return gamma * torch.rsqrt(bn.running_var + bn.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.train_steps += 1
            if self.freeze_bn_after is not None and self.train_steps > self.freeze_bn_after:
                self.bn_frozen = True
        batch_stats = self.training and not self.bn_frozen
        per_out_channel = (-1,) + (1,) * (self.weight.dim() - 1)
        channel = (1, -1) + (1,) * (self.weight.dim() - 2)
        scale = self.bn_scale()
        xq, replay = self._quantize_input(x)
        q = self.weight_quantizer
        if batch_stats and q is not None and q.can_fold():
            # conv(x, Q(w * scale)) / scale as conv(x, Q(w * scale) / scale):
            # the weight is quantized on the folded grid without forming
            # w * scale, and the conv output needs no division.
            w, w_replay = q.forward_folded(self.weight, scale)
            with recompute_saved([(xq, replay), (w, w_replay)]):
                y = self._conv_forward(xq, w, None)
            return self._batch_norm(y, channel)
        folded_scale = scale.reshape(per_out_channel)
        # The folded weight is a temporary: backward recomputes it from the
        # weight and this step's scale rather than keeping it.
        w, w_replay = self._quantize_weight(self.weight * folded_scale,
                                            lambda w=self.weight.detach(), s=folded_scale.detach(): w * s)
        with recompute_saved([(xq, replay), (w, w_replay)]):
            y = self._conv_forward(xq, w, None)
        if not batch_stats:
            return self._activate(y + self.folded_bias().reshape(channel))
        # Undo the running-statistics scale so BatchNorm normalises the conv
        # output with this batch's statistics (and updates the running ones).
        # The scale is detached here: batch normalisation is invariant to a
        # nonzero per-channel scale of its input (up to eps and its sign), so
        # its gradient through this division is zero, and autograd need not
        # keep y for it.
        y = y * (1.0 / scale.detach()).reshape(channel)
        return self._batch_norm(y, channel)

    def _batch_norm(self, y: torch.Tensor, channel) -> torch.Tensor:
        """The conv bias, BatchNorm with this batch's statistics (updating the
        running ones) and the fused ReLU."""
        bn = self.bn
        if self.bias is not None:
            y = y + self.bias.reshape(channel)
        momentum = bn.momentum
        bn.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative average, as nn.BatchNorm
            momentum = 1.0 / float(bn.num_batches_tracked)
        y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, momentum, bn.eps)
        return F.relu_(y) if self.relu else y  # BatchNorm's backward does not need its output

    def folded_bias(self) -> torch.Tensor:
        """The bias of the deployed (folded) convolution."""
        bn = self.bn
        bias = self.bias if self.bias is not None else torch.zeros_like(bn.running_mean)
        return (bias - bn.running_mean) * self.bn_scale() + (bn.bias if bn.affine else 0.0)


class QuantConvBn1d(_ConvBnMixin, QuantConv1d):
    """Conv1d + BatchNorm1d (+ ReLU) for QAT, BN folded into the quantized weight."""


class QuantConvBn2d(_ConvBnMixin, QuantConv2d):
    """Conv2d + BatchNorm2d (+ ReLU) for QAT, BN folded into the quantized weight."""
