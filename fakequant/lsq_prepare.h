// Validated, kernel-ready operands of the LSQ ops, shared by their CPU and
// CUDA implementations.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat {

struct LsqOperands {
  at::Tensor x;           // contiguous
  at::Tensor scale;       // float32, contiguous, finite and > 0
  at::Tensor zero_point;  // float32, rounded half to even and clamped
  kernels::AffineArgs args;
  kernels::DType dtype;
  int64_t numel;
  int64_t outer;  // numel / (channels * inner): slices of every channel
};

LsqOperands prepare_lsq(const char* op, const at::Tensor& x, const at::Tensor& scale,
                        const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                        std::optional<int64_t> axis, std::optional<int64_t> group_size);

struct LsqBackwardCall {
  LsqOperands operands;
  at::Tensor grad;    // contiguous, x's shape and dtype
  at::Tensor grad_x;  // allocated, contiguous
  double grad_factor;

  // (grad_x, d_scale, d_zero_point) from the kernels' per-channel double sums:
  // d_scale = scale_sum * grad_factor, d_zero_point = -scale * outside_sum *
  // grad_factor, shaped and typed like the scale and zero_point inputs.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> finish(const at::Tensor& scale_sum,
                                                        const at::Tensor& outside_sum,
                                                        const at::Tensor& scale,
                                                        const at::Tensor& zero_point) const;
};

LsqBackwardCall prepare_lsq_backward(const char* op, const at::Tensor& grad, const at::Tensor& x,
                                     const at::Tensor& scale, const at::Tensor& zero_point,
                                     int64_t quant_min, int64_t quant_max,
                                     std::optional<double> grad_factor,
                                     std::optional<int64_t> axis,
                                     std::optional<int64_t> group_size);

}  // namespace torchqat
