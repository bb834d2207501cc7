// What the INT8 GEMM-based ops (linear_int8, conv2d_int8), the depthwise
// conv and the W4A8 conv share: the checked epilogue arguments, the output
// grid and the conv geometry.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "torchqat/kernels/gemm_int8.h"

namespace torchqat {

// Checks a uint8 output grid: out_scale and out_zero_point both given (finite
// scale > 0, zero point in [0, 255]) or neither (float output).
void check_output_grid(const char* op, std::optional<double> out_scale, std::optional<int64_t> out_zero_point);

// Checks x_zero_point, multiplier and bias (n values), out_scale/out_zero_point;
// returns the GEMM arguments with the epilogue set (b.n = n, ldc = n; the
// caller sets a, lda, b's data and sums, m and out).
kernels::GemmInt8Args checked_epilogue(const char* op, int64_t n, int64_t x_zero_point, const at::Tensor& multiplier,
                                       const std::optional<at::Tensor>& bias, std::optional<double> out_scale,
                                       std::optional<int64_t> out_zero_point, bool relu);

struct ConvGeometry {
  int64_t n, c, h, w, kh, kw, oh, ow;
};

// Checks a 4-D input and positive kernel/stride/dilation, padding >= 0, and
// that the kernel fits the padded input.
ConvGeometry conv_geometry(const char* op, c10::IntArrayRef x_sizes, c10::IntArrayRef kernel,
                           c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation);

// The [N * OH * OW, channels] rows a conv writes: uint8 when it requantizes, else float.
inline at::Tensor conv_output_rows(const at::Tensor& x, const ConvGeometry& g, int64_t channels, bool requantize) {
  return at::empty({g.n * g.oh * g.ow, channels}, x.options().dtype(requantize ? at::kByte : at::kFloat));
}

// [N * OH * OW, O] results viewed as NCHW (channels-last strides).
inline at::Tensor as_nchw(const at::Tensor& rows, const ConvGeometry& g) {
  return rows.view({g.n, g.oh, g.ow, rows.size(-1)}).permute({0, 3, 1, 2});
}

}  // namespace torchqat
