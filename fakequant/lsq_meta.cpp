// Meta (shape-only) kernels of the LSQ ops, with the checks that need no data.
#include <torch/library.h>

#include "fakequant/qparams.h"

namespace torchqat {
namespace {

constexpr const char* kOp = "lsq_fake_quantize";

void check_meta(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                int64_t quant_min, int64_t quant_max) {
  check_input_dtype(kOp, x);
  check_quant_range(kOp, quant_min, quant_max);
  check_same_device(kOp, x, "x", scale, "scale");
  check_same_device(kOp, x, "x", zero_point, "zero_point");
  TORCH_CHECK(at::isFloatingType(scale.scalar_type()), kOp,
              ": scale must be a floating-point tensor, got ", scale.scalar_type());
}

at::Tensor lsq_forward_meta(const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                            std::optional<int64_t> /*axis*/, std::optional<int64_t> /*group*/) {
  check_meta(x, scale, zero_point, quant_min, quant_max);
  return at::empty_symint(x.sym_sizes(), x.options());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsq_backward_meta(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
    std::optional<double> /*grad_factor*/, std::optional<int64_t> /*axis*/,
    std::optional<int64_t> /*group*/) {
  check_meta(x, scale, zero_point, quant_min, quant_max);
  const auto zp_type = at::isFloatingType(zero_point.scalar_type()) ? zero_point.scalar_type()
                                                                    : at::kFloat;
  return {at::empty_symint(grad.sym_sizes(), grad.options()),
          at::empty_symint(scale.sym_sizes(), scale.options()),
          at::empty_symint(zero_point.sym_sizes(), zero_point.options().dtype(zp_type))};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, Meta, m) {
  m.impl("lsq_fake_quantize_forward", &lsq_forward_meta);
  m.impl("lsq_fake_quantize_backward", &lsq_backward_meta);
}

}  // namespace torchqat
