// Typed dispatcher calls of torchqat's ops, for code that composes them
// (autograd Functions, composite kernels): calls go through the dispatcher so
// every backend and tracing mode sees the op.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

namespace torchqat::ops {

std::tuple<at::Tensor, at::Tensor> fake_quantize_forward(
    const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, std::optional<int64_t> axis,
    std::optional<int64_t> group_size);

std::tuple<at::Tensor, at::Tensor> fake_quantize_fp8_forward(const at::Tensor& x,
                                                             const at::Tensor& scale,
                                                             c10::string_view fmt,
                                                             std::optional<int64_t> axis,
                                                             std::optional<int64_t> group_size);

at::Tensor ste_backward(const at::Tensor& grad, const at::Tensor& mask);

at::Tensor lsq_fake_quantize_forward(const at::Tensor& x, const at::Tensor& scale,
                                     const at::Tensor& zero_point, int64_t quant_min,
                                     int64_t quant_max, std::optional<int64_t> axis,
                                     std::optional<int64_t> group_size);

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsq_fake_quantize_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
    std::optional<double> grad_factor, std::optional<int64_t> axis,
    std::optional<int64_t> group_size);

std::tuple<at::Tensor, at::Tensor, at::Tensor> observe_minmax(const at::Tensor& x,
                                                              std::optional<int64_t> axis,
                                                              std::optional<int64_t> group_size);

std::tuple<at::Tensor, at::Tensor> choose_qparams(const at::Tensor& min_val,
                                                  const at::Tensor& max_val, int64_t quant_min,
                                                  int64_t quant_max, bool symmetric);

std::tuple<at::Tensor, at::Tensor> observe_fake_quantize_forward(
    const at::Tensor& x, at::Tensor& min_val, at::Tensor& max_val, int64_t quant_min,
    int64_t quant_max, bool symmetric, std::optional<double> averaging_constant, bool observe,
    bool fake_quant, std::optional<int64_t> axis, std::optional<int64_t> group_size);

// The differentiable public ops (autograd runs their backward).
at::Tensor fake_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                         int64_t quant_min, int64_t quant_max, std::optional<int64_t> axis,
                         std::optional<int64_t> group_size);

at::Tensor lsq_fake_quantize(const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                             std::optional<double> grad_factor, std::optional<int64_t> axis,
                             std::optional<int64_t> group_size);

at::Tensor observe_fake_quantize(const at::Tensor& x, at::Tensor& min_val, at::Tensor& max_val,
                                 int64_t quant_min, int64_t quant_max, bool symmetric,
                                 std::optional<double> averaging_constant, bool observe,
                                 bool fake_quant, std::optional<int64_t> axis,
                                 std::optional<int64_t> group_size);

// Integer inference (the exported model).
at::Tensor quantize_uint8(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                          int64_t quant_min, int64_t quant_max);

std::tuple<at::Tensor, at::Tensor> pack_linear_int8(const at::Tensor& weight);

at::Tensor linear_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& col_sums, const at::Tensor& multiplier,
                       const std::optional<at::Tensor>& bias, std::optional<double> out_scale,
                       std::optional<int64_t> out_zero_point, bool relu);

at::Tensor conv2d_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& col_sums, const at::Tensor& multiplier,
                       const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                       c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                       std::optional<double> out_scale, std::optional<int64_t> out_zero_point, bool relu);

std::tuple<at::Tensor, at::Tensor> pack_grouped_conv2d_int8(const at::Tensor& weight, int64_t groups);

at::Tensor grouped_conv2d_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                               const at::Tensor& col_sums, const at::Tensor& multiplier,
                               const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                               c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                               std::optional<double> out_scale, std::optional<int64_t> out_zero_point, bool relu);

std::tuple<at::Tensor, at::Tensor> pack_depthwise_int8(const at::Tensor& weight);

at::Tensor depthwise_conv2d_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                                 const at::Tensor& weight_sums, const at::Tensor& multiplier,
                                 const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                                 c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                 std::optional<double> out_scale, std::optional<int64_t> out_zero_point,
                                 bool relu);

at::Tensor linear_int4(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                       const std::optional<at::Tensor>& bias);

std::tuple<at::Tensor, at::Tensor> pack_linear_w4a8(const at::Tensor& weight, const at::Tensor& scales);

at::Tensor linear_w4a8(const at::Tensor& x, int64_t x_zero_point, double x_scale, const at::Tensor& packed,
                       const at::Tensor& scales, const at::Tensor& weight_sums,
                       const std::optional<at::Tensor>& bias);

at::Tensor conv2d_w4a8(const at::Tensor& x, int64_t x_zero_point, double x_scale, const at::Tensor& packed,
                       const at::Tensor& scales, const at::Tensor& weight_sums,
                       const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                       c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                       std::optional<double> out_scale, std::optional<int64_t> out_zero_point, bool relu);

}  // namespace torchqat::ops
