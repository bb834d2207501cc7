// Autograd for lsq_fake_quantize: forward and backward are their own ops;
// the backward saves x, scale and zero_point (references, no copies) and
// returns gradients for all three.
#include <torch/autograd.h>
#include <torch/library.h>

#include "fakequant/ops.h"
#include "fakequant/qparams.h"

namespace torchqat {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LsqFakeQuantizeFunction : public torch::autograd::Function<LsqFakeQuantizeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                            std::optional<double> grad_factor, std::optional<int64_t> axis,
                            std::optional<int64_t> group_size) {
    check_grad_factor("lsq_fake_quantize", grad_factor);
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, scale, zero_point});
    ctx->saved_data["quant_min"] = quant_min;
    ctx->saved_data["quant_max"] = quant_max;
    ctx->saved_data["grad_factor"] = grad_factor;
    ctx->saved_data["axis"] = axis;
    ctx->saved_data["group_size"] = group_size;
    return ops::lsq_fake_quantize_forward(x, scale, zero_point, quant_min, quant_max, axis,
                                          group_size);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& d = ctx->saved_data;
    auto [grad_x, grad_scale, grad_zero_point] = ops::lsq_fake_quantize_backward(
        grad_outputs[0], saved[0], saved[1], saved[2], d.at("quant_min").toInt(),
        d.at("quant_max").toInt(), d.at("grad_factor").toOptional<double>(),
        d.at("axis").toOptional<int64_t>(), d.at("group_size").toOptional<int64_t>());
    if (!saved[2].is_floating_point()) grad_zero_point = at::Tensor();  // integer: fixed
    return {grad_x, grad_scale, grad_zero_point, {}, {}, {}, {}, {}};
  }
};

at::Tensor lsq_autograd(const at::Tensor& x, const at::Tensor& scale,
                        const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                        std::optional<double> grad_factor, std::optional<int64_t> axis,
                        std::optional<int64_t> group_size) {
  return LsqFakeQuantizeFunction::apply(x, scale, zero_point, quant_min, quant_max, grad_factor,
                                        axis, group_size);
}

at::Tensor lsq_no_grad(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                       int64_t quant_min, int64_t quant_max, std::optional<double> grad_factor,
                       std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  check_grad_factor("lsq_fake_quantize", grad_factor);
  return ops::lsq_fake_quantize_forward(x, scale, zero_point, quant_min, quant_max, axis,
                                        group_size);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, Autograd, m) { m.impl("lsq_fake_quantize", &lsq_autograd); }

TORCH_LIBRARY_IMPL(torchqat, CompositeExplicitAutograd, m) {
  m.impl("lsq_fake_quantize", &lsq_no_grad);
}

}  // namespace torchqat
