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

}  // namespace torchqat::ops
