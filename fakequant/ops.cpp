#include "fakequant/ops.h"

namespace torchqat::ops {
namespace {

template <class Signature>
c10::TypedOperatorHandle<Signature> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> fake_quantize_forward(
    const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, std::optional<int64_t> axis,
    std::optional<int64_t> group_size) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, int64_t, int64_t,
                                                std::optional<int64_t>, std::optional<int64_t>)>(
          "torchqat::fake_quantize_forward");
  return op.call(x, scale, zero_point, quant_min, quant_max, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_fp8_forward(const at::Tensor& x,
                                                             const at::Tensor& scale,
                                                             c10::string_view fmt,
                                                             std::optional<int64_t> axis,
                                                             std::optional<int64_t> group_size) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                c10::string_view, std::optional<int64_t>,
                                                std::optional<int64_t>)>(
          "torchqat::fake_quantize_fp8_forward");
  return op.call(x, scale, fmt, axis, group_size);
}

at::Tensor ste_backward(const at::Tensor& grad, const at::Tensor& mask) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&)>("torchqat::ste_backward");
  return op.call(grad, mask);
}

at::Tensor lsq_fake_quantize_forward(const at::Tensor& x, const at::Tensor& scale,
                                     const at::Tensor& zero_point, int64_t quant_min,
                                     int64_t quant_max, std::optional<int64_t> axis,
                                     std::optional<int64_t> group_size) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                        std::optional<int64_t>, std::optional<int64_t>)>(
          "torchqat::lsq_fake_quantize_forward");
  return op.call(x, scale, zero_point, quant_min, quant_max, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsq_fake_quantize_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
    std::optional<double> grad_factor, std::optional<int64_t> axis,
    std::optional<int64_t> group_size) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
          const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
          int64_t, std::optional<double>, std::optional<int64_t>, std::optional<int64_t>)>(
          "torchqat::lsq_fake_quantize_backward");
  return op.call(grad, x, scale, zero_point, quant_min, quant_max, grad_factor, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> observe_minmax(const at::Tensor& x,
                                                              std::optional<int64_t> axis,
                                                              std::optional<int64_t> group_size) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
          const at::Tensor&, std::optional<int64_t>, std::optional<int64_t>)>(
          "torchqat::observe_minmax");
  return op.call(x, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor> choose_qparams(const at::Tensor& min_val,
                                                  const at::Tensor& max_val, int64_t quant_min,
                                                  int64_t quant_max, bool symmetric) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t,
                                                int64_t, bool)>("torchqat::choose_qparams");
  return op.call(min_val, max_val, quant_min, quant_max, symmetric);
}

std::tuple<at::Tensor, at::Tensor> observe_fake_quantize_forward(
    const at::Tensor& x, at::Tensor& min_val, at::Tensor& max_val, int64_t quant_min,
    int64_t quant_max, bool symmetric, std::optional<double> averaging_constant, bool observe,
    bool fake_quant, std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(
          const at::Tensor&, at::Tensor&, at::Tensor&, int64_t, int64_t, bool,
          std::optional<double>, bool, bool, std::optional<int64_t>, std::optional<int64_t>)>(
          "torchqat::observe_fake_quantize_forward");
  return op.call(x, min_val, max_val, quant_min, quant_max, symmetric, averaging_constant,
                 observe, fake_quant, axis, group_size);
}

at::Tensor fake_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                         int64_t quant_min, int64_t quant_max, std::optional<int64_t> axis,
                         std::optional<int64_t> group_size) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                        std::optional<int64_t>, std::optional<int64_t>)>("torchqat::fake_quantize");
  return op.call(x, scale, zero_point, quant_min, quant_max, axis, group_size);
}

at::Tensor lsq_fake_quantize(const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                             std::optional<double> grad_factor, std::optional<int64_t> axis,
                             std::optional<int64_t> group_size) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                        std::optional<double>, std::optional<int64_t>, std::optional<int64_t>)>(
          "torchqat::lsq_fake_quantize");
  return op.call(x, scale, zero_point, quant_min, quant_max, grad_factor, axis, group_size);
}

at::Tensor observe_fake_quantize(const at::Tensor& x, at::Tensor& min_val, at::Tensor& max_val,
                                 int64_t quant_min, int64_t quant_max, bool symmetric,
                                 std::optional<double> averaging_constant, bool observe,
                                 bool fake_quant, std::optional<int64_t> axis,
                                 std::optional<int64_t> group_size) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, at::Tensor&, at::Tensor&, int64_t, int64_t, bool,
                        std::optional<double>, bool, bool, std::optional<int64_t>,
                        std::optional<int64_t>)>("torchqat::observe_fake_quantize");
  return op.call(x, min_val, max_val, quant_min, quant_max, symmetric, averaging_constant, observe,
                 fake_quant, axis, group_size);
}

at::Tensor quantize_uint8(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                          int64_t quant_min, int64_t quant_max) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t)>(
          "torchqat::quantize_uint8");
  return op.call(x, scale, zero_point, quant_min, quant_max);
}

std::tuple<at::Tensor, at::Tensor> pack_linear_int8(const at::Tensor& weight) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&)>("torchqat::pack_linear_int8");
  return op.call(weight);
}

at::Tensor linear_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& col_sums, const at::Tensor& multiplier,
                       const std::optional<at::Tensor>& bias, std::optional<double> out_scale,
                       std::optional<int64_t> out_zero_point, bool relu) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                        const std::optional<at::Tensor>&, std::optional<double>, std::optional<int64_t>,
                        bool)>("torchqat::linear_int8");
  return op.call(x, x_zero_point, packed, col_sums, multiplier, bias, out_scale, out_zero_point, relu);
}

at::Tensor conv2d_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& col_sums, const at::Tensor& multiplier,
                       const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                       c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                       std::optional<double> out_scale, std::optional<int64_t> out_zero_point, bool relu) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                        const std::optional<at::Tensor>&, c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef,
                        c10::IntArrayRef, std::optional<double>, std::optional<int64_t>, bool)>(
          "torchqat::conv2d_int8");
  return op.call(x, x_zero_point, packed, col_sums, multiplier, bias, kernel_size, stride, padding, dilation,
                 out_scale, out_zero_point, relu);
}

std::tuple<at::Tensor, at::Tensor> pack_grouped_conv2d_int8(const at::Tensor& weight, int64_t groups) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>(
      "torchqat::pack_grouped_conv2d_int8");
  return op.call(weight, groups);
}

at::Tensor grouped_conv2d_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                               const at::Tensor& col_sums, const at::Tensor& multiplier,
                               const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                               c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                               std::optional<double> out_scale, std::optional<int64_t> out_zero_point, bool relu) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                        const std::optional<at::Tensor>&, c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef,
                        c10::IntArrayRef, std::optional<double>, std::optional<int64_t>, bool)>(
          "torchqat::grouped_conv2d_int8");
  return op.call(x, x_zero_point, packed, col_sums, multiplier, bias, kernel_size, stride, padding, dilation,
                 out_scale, out_zero_point, relu);
}

std::tuple<at::Tensor, at::Tensor> pack_depthwise_int8(const at::Tensor& weight) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&)>("torchqat::pack_depthwise_int8");
  return op.call(weight);
}

at::Tensor depthwise_conv2d_int8(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                                 const at::Tensor& weight_sums, const at::Tensor& multiplier,
                                 const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                                 c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                 std::optional<double> out_scale, std::optional<int64_t> out_zero_point,
                                 bool relu) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                        const std::optional<at::Tensor>&, c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef,
                        c10::IntArrayRef, std::optional<double>, std::optional<int64_t>, bool)>(
          "torchqat::depthwise_conv2d_int8");
  return op.call(x, x_zero_point, packed, weight_sums, multiplier, bias, kernel_size, stride, padding, dilation,
                 out_scale, out_zero_point, relu);
}

at::Tensor linear_int4(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                       const std::optional<at::Tensor>& bias) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&)>(
          "torchqat::linear_int4");
  return op.call(x, packed, scales, bias);
}

std::tuple<at::Tensor, at::Tensor> pack_linear_w4a8(const at::Tensor& weight, const at::Tensor& scales) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>(
          "torchqat::pack_linear_w4a8");
  return op.call(weight, scales);
}

at::Tensor linear_w4a8(const at::Tensor& x, int64_t x_zero_point, double x_scale, const at::Tensor& packed,
                       const at::Tensor& scales, const at::Tensor& weight_sums,
                       const std::optional<at::Tensor>& bias) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, double, const at::Tensor&, const at::Tensor&,
                        const at::Tensor&, const std::optional<at::Tensor>&)>("torchqat::linear_w4a8");
  return op.call(x, x_zero_point, x_scale, packed, scales, weight_sums, bias);
}

at::Tensor conv2d_w4a8(const at::Tensor& x, int64_t x_zero_point, double x_scale, const at::Tensor& packed,
                       const at::Tensor& scales, const at::Tensor& weight_sums,
                       const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel_size,
                       c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                       std::optional<double> out_scale, std::optional<int64_t> out_zero_point, bool relu) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, double, const at::Tensor&, const at::Tensor&,
                        const at::Tensor&, const std::optional<at::Tensor>&, c10::IntArrayRef, c10::IntArrayRef,
                        c10::IntArrayRef, c10::IntArrayRef, std::optional<double>, std::optional<int64_t>, bool)>(
          "torchqat::conv2d_w4a8");
  return op.call(x, x_zero_point, x_scale, packed, scales, weight_sums, bias, kernel_size, stride, padding, dilation,
                 out_scale, out_zero_point, relu);
}

}  // namespace torchqat::ops
