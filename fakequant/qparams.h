// Argument checks and quantization-parameter layout shared by the CPU, CUDA
// and Meta implementations of the fake-quant ops.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string_view>
#include <vector>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat {

// x (or the tensor called `name`) must be float32, float16 or bfloat16.
void check_input_dtype(const char* op, const at::Tensor& x, const char* name = "x");
kernels::DType kernel_dtype(const at::Tensor& x);

// quant_min < quant_max, both inside int32.
void check_quant_range(const char* op, int64_t quant_min, int64_t quant_max);

// The granularity that axis / group_size select for x: x's flat layout and the
// shape of one statistic (scale, min, ...) per channel or group; per-tensor
// statistics are 0-d.
struct Granularity {
  enum Kind { kPerTensor, kPerChannel, kPerGroup } kind;
  kernels::ChannelLayout layout;
  std::vector<int64_t> param_shape;
  int64_t axis;  // normalised, per-channel only
};

Granularity resolve_granularity(const char* op, const at::Tensor& x, std::optional<int64_t> axis,
                                std::optional<int64_t> group_size);

// Checks that `param` (scale or zero_point) is shaped for the granularity
// selected by axis / group_size and returns the flat layout of x.
kernels::ChannelLayout resolve_layout(const char* op, const char* param_name,
                                      const at::Tensor& x, const at::Tensor& param,
                                      std::optional<int64_t> axis,
                                      std::optional<int64_t> group_size);

// Every check an affine op (fake_quantize, lsq_fake_quantize) makes of its
// operands' types, devices and shapes; returns x's flat layout.
kernels::ChannelLayout check_affine_operands(const char* op, const at::Tensor& x,
                                             const at::Tensor& scale,
                                             const at::Tensor& zero_point, int64_t quant_min,
                                             int64_t quant_max, std::optional<int64_t> axis,
                                             std::optional<int64_t> group_size);

void check_same_device(const char* op, const at::Tensor& x, const char* x_name,
                       const at::Tensor& other, const char* other_name);

// scale: floating point, every value finite and > 0. Returns it as a
// contiguous float32 tensor on x's device. On the CPU a bad value raises an
// error naming it and its index; on CUDA the check runs on the device
// (an asynchronous device-side assertion, no host synchronisation).
at::Tensor checked_scale(const char* op, const at::Tensor& scale);

// zero_point: integer tensor, or floating tensor holding integers, within
// [quant_min, quant_max]. Returned as contiguous float32 (exact: |zp| < 2^24
// is checked). Value checks as for checked_scale.
at::Tensor checked_zero_point(const char* op, const at::Tensor& zero_point, int64_t quant_min,
                              int64_t quant_max);

// LSQ's zero point: any real or integer tensor, rounded half to even and
// clamped to [quant_min, quant_max] (as ATen's learnable ops); must be finite.
// Returned as contiguous float32 on its device.
at::Tensor rounded_zero_point(const char* op, const at::Tensor& zero_point, int64_t quant_min,
                              int64_t quant_max);

// A given grad_factor must be finite and > 0 (checked when the op is called,
// not only when its backward runs).
void check_grad_factor(const char* op, std::optional<double> grad_factor);

// grad_factor as given (finite, > 0) or LSQ's default 1 / sqrt(n * Q_P), with
// n the elements per scale and Q_P = quant_max (-quant_min if quant_max <= 0).
double resolve_grad_factor(const char* op, std::optional<double> grad_factor, int64_t numel,
                           int64_t num_scales, int64_t quant_min, int64_t quant_max);

kernels::Fp8Format parse_fp8_format(std::string_view fmt);

}  // namespace torchqat
