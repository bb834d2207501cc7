// Autograd for the public fake-quant ops: straight-through estimator.
// Forward calls the *_forward op (output + 1-bit mask) below autograd and
// saves only the mask; backward is ste_backward(grad, mask). Scale and
// zero_point get no gradient here (learnable scales are lsq_fake_quantize).
//
// The same ops are registered as CompositeExplicitAutograd for calls that
// skip autograd (inference mode, tracing below the Autograd key).
#include <torch/autograd.h>
#include <torch/library.h>

#include "fakequant/ops.h"

namespace torchqat {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class FakeQuantizeFunction : public torch::autograd::Function<FakeQuantizeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                            std::optional<int64_t> axis, std::optional<int64_t> group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, mask] = ops::fake_quantize_forward(x, scale, zero_point, quant_min, quant_max,
                                                     axis, group_size);
    ctx->save_for_backward({mask});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto mask = ctx->get_saved_variables()[0];
    return {ops::ste_backward(grad_outputs[0], mask), {}, {}, {}, {}, {}, {}};
  }
};

class FakeQuantizeFp8Function : public torch::autograd::Function<FakeQuantizeFp8Function> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            c10::string_view fmt, std::optional<int64_t> axis,
                            std::optional<int64_t> group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, mask] = ops::fake_quantize_fp8_forward(x, scale, fmt, axis, group_size);
    ctx->save_for_backward({mask});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto mask = ctx->get_saved_variables()[0];
    return {ops::ste_backward(grad_outputs[0], mask), {}, {}, {}, {}};
  }
};

at::Tensor fake_quantize_autograd(const at::Tensor& x, const at::Tensor& scale,
                                  const at::Tensor& zero_point, int64_t quant_min,
                                  int64_t quant_max, std::optional<int64_t> axis,
                                  std::optional<int64_t> group_size) {
  return FakeQuantizeFunction::apply(x, scale, zero_point, quant_min, quant_max, axis,
                                     group_size);
}

at::Tensor fake_quantize_fp8_autograd(const at::Tensor& x, const at::Tensor& scale,
                                      c10::string_view fmt, std::optional<int64_t> axis,
                                      std::optional<int64_t> group_size) {
  return FakeQuantizeFp8Function::apply(x, scale, fmt, axis, group_size);
}

at::Tensor fake_quantize_no_grad(const at::Tensor& x, const at::Tensor& scale,
                                 const at::Tensor& zero_point, int64_t quant_min,
                                 int64_t quant_max, std::optional<int64_t> axis,
                                 std::optional<int64_t> group_size) {
  return std::get<0>(
      ops::fake_quantize_forward(x, scale, zero_point, quant_min, quant_max, axis, group_size));
}

at::Tensor fake_quantize_fp8_no_grad(const at::Tensor& x, const at::Tensor& scale,
                                     c10::string_view fmt, std::optional<int64_t> axis,
                                     std::optional<int64_t> group_size) {
  return std::get<0>(ops::fake_quantize_fp8_forward(x, scale, fmt, axis, group_size));
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, Autograd, m) {
  m.impl("fake_quantize", &fake_quantize_autograd);
  m.impl("fake_quantize_fp8", &fake_quantize_fp8_autograd);
}

TORCH_LIBRARY_IMPL(torchqat, CompositeExplicitAutograd, m) {
  m.impl("fake_quantize", &fake_quantize_no_grad);
  m.impl("fake_quantize_fp8", &fake_quantize_fp8_no_grad);
}

}  // namespace torchqat
