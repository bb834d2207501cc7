// observe_fake_quantize: update the range, derive qparams, fake-quantize, in
// one op and without host synchronisation. The forward is composed of the
// torchqat ops it needs (observe_minmax, choose_qparams,
// fake_quantize_forward), so it runs on every device they support; autograd
// is the straight-through estimator over the 1-bit mask.
#include <torch/autograd.h>
#include <torch/library.h>

#include "fakequant/ops.h"
#include "fakequant/prepare.h"
#include "fakequant/qparams.h"

namespace torchqat {
namespace {

constexpr const char* kOp = "observe_fake_quantize";

void update_range(const at::Tensor& lo, const at::Tensor& hi, at::Tensor& min_val,
                  at::Tensor& max_val, std::optional<double> averaging_constant) {
  const auto lo_ = lo.reshape(min_val.sizes()), hi_ = hi.reshape(max_val.sizes());
  if (!averaging_constant.has_value()) {  // running min / max (+inf/-inf where unseen)
    min_val.copy_(at::minimum(min_val, lo_));
    max_val.copy_(at::maximum(max_val, hi_));
    return;
  }
  const double c = *averaging_constant;
  const auto seen = lo_.le(hi_);  // the batch had finite values there
  const auto first = at::logical_and(min_val.isinf(), seen);
  const auto new_lo = at::where(first, lo_, min_val + c * (lo_ - min_val));
  const auto new_hi = at::where(first, hi_, max_val + c * (hi_ - max_val));
  min_val.copy_(at::where(seen, new_lo, min_val));
  max_val.copy_(at::where(seen, new_hi, max_val));
}

std::tuple<at::Tensor, at::Tensor> observe_fake_quantize_forward(
    const at::Tensor& x, at::Tensor& min_val, at::Tensor& max_val, int64_t quant_min,
    int64_t quant_max, bool symmetric, std::optional<double> averaging_constant, bool observe,
    bool fake_quant, std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  check_input_dtype(kOp, x);
  check_quant_range(kOp, quant_min, quant_max);
  check_same_device(kOp, x, "x", min_val, "min_val");
  check_same_device(kOp, x, "x", max_val, "max_val");
  TORCH_CHECK(!averaging_constant.has_value() ||
                  (*averaging_constant > 0.0 && *averaging_constant <= 1.0),
              kOp, ": averaging_constant must be in (0, 1], got ", averaging_constant.value_or(0));
  const auto g = resolve_granularity(kOp, x, axis, group_size);
  const int64_t stats = c10::multiply_integers(g.param_shape);
  TORCH_CHECK(min_val.scalar_type() == at::kFloat && max_val.scalar_type() == at::kFloat &&
                  min_val.numel() == stats && max_val.numel() == stats,
              kOp, ": min_val and max_val must be float32 with one value per statistic (",
              stats, " for this granularity), got ", min_val.scalar_type(), " ", min_val.sizes(),
              " and ", max_val.scalar_type(), " ", max_val.sizes());
  if (observe && x.numel() > 0) {
    auto [lo, hi, nonfinite] = ops::observe_minmax(x.detach(), axis, group_size);
    update_range(lo, hi, min_val, max_val, averaging_constant);
  }
  if (!fake_quant) {
    return {x.clone(), mask_like(x).fill_(0xff)};  // every gradient passes
  }
  const std::vector<int64_t> shape = g.param_shape.empty() ? std::vector<int64_t>{1} : g.param_shape;
  auto [scale, zero_point] = ops::choose_qparams(min_val.reshape(shape), max_val.reshape(shape),
                                                 quant_min, quant_max, symmetric);
  return ops::fake_quantize_forward(x, scale, zero_point, quant_min, quant_max, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor> observe_fake_quantize_meta(
    const at::Tensor& x, at::Tensor& /*min_val*/, at::Tensor& /*max_val*/, int64_t quant_min,
    int64_t quant_max, bool /*symmetric*/, std::optional<double> /*averaging_constant*/,
    bool /*observe*/, bool /*fake_quant*/, std::optional<int64_t> /*axis*/,
    std::optional<int64_t> /*group_size*/) {
  check_input_dtype(kOp, x);
  check_quant_range(kOp, quant_min, quant_max);
  return {at::empty_symint(x.sym_sizes(), x.options()), mask_like(x)};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ObserveFakeQuantizeFunction
    : public torch::autograd::Function<ObserveFakeQuantizeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::Tensor min_val,
                            at::Tensor max_val, int64_t quant_min, int64_t quant_max,
                            bool symmetric, std::optional<double> averaging_constant,
                            bool observe, bool fake_quant, std::optional<int64_t> axis,
                            std::optional<int64_t> group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, mask] = ops::observe_fake_quantize_forward(
        x, min_val, max_val, quant_min, quant_max, symmetric, averaging_constant, observe,
        fake_quant, axis, group_size);
    ctx->save_for_backward({mask});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto mask = ctx->get_saved_variables()[0];
    variable_list grads(11);
    grads[0] = ops::ste_backward(grad_outputs[0], mask);
    return grads;
  }
};

at::Tensor observe_fake_quantize_autograd(const at::Tensor& x, at::Tensor& min_val,
                                          at::Tensor& max_val, int64_t quant_min,
                                          int64_t quant_max, bool symmetric,
                                          std::optional<double> averaging_constant, bool observe,
                                          bool fake_quant, std::optional<int64_t> axis,
                                          std::optional<int64_t> group_size) {
  return ObserveFakeQuantizeFunction::apply(x, min_val, max_val, quant_min, quant_max, symmetric,
                                            averaging_constant, observe, fake_quant, axis,
                                            group_size);
}

at::Tensor observe_fake_quantize_no_grad(const at::Tensor& x, at::Tensor& min_val,
                                         at::Tensor& max_val, int64_t quant_min,
                                         int64_t quant_max, bool symmetric,
                                         std::optional<double> averaging_constant, bool observe,
                                         bool fake_quant, std::optional<int64_t> axis,
                                         std::optional<int64_t> group_size) {
  return std::get<0>(ops::observe_fake_quantize_forward(x, min_val, max_val, quant_min, quant_max,
                                                       symmetric, averaging_constant, observe,
                                                       fake_quant, axis, group_size));
}

}  // namespace

// The forward is device-generic (composed of ops with CPU and CUDA kernels).
TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("observe_fake_quantize_forward", &observe_fake_quantize_forward);
}
TORCH_LIBRARY_IMPL(torchqat, CUDA, m) {
  m.impl("observe_fake_quantize_forward", &observe_fake_quantize_forward);
}
TORCH_LIBRARY_IMPL(torchqat, Meta, m) {
  m.impl("observe_fake_quantize_forward", &observe_fake_quantize_meta);
}

TORCH_LIBRARY_IMPL(torchqat, CompositeExplicitAutograd, m) {
  m.impl("observe_fake_quantize", &observe_fake_quantize_no_grad);
}

TORCH_LIBRARY_IMPL(torchqat, Autograd, m) {
  m.impl("observe_fake_quantize", &observe_fake_quantize_autograd);
}

}  // namespace torchqat
