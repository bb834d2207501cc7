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

// grad must match x in shape, dtype and device.
void check_lsq_grad(const char* op, const at::Tensor& grad, const at::Tensor& x);

// d_scale = scale_sum * grad_factor, d_zero_point = -scale * outside_sum *
// grad_factor, shaped and typed like the scale and zero_point inputs.
std::tuple<at::Tensor, at::Tensor> lsq_param_grads(const at::Tensor& scale_sum,
                                                   const at::Tensor& outside_sum,
                                                   const LsqOperands& operands,
                                                   const at::Tensor& scale,
                                                   const at::Tensor& zero_point,
                                                   double grad_factor);

}  // namespace torchqat
