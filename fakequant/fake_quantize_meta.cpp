// Meta (shape-only) kernels, written with SymInt so torch.compile and
// torch.export can trace dynamic shapes. Checks that need only dtypes and
// ranks run here too, so tracing fails with the same message as eager.
#include <torch/library.h>

#include "fakequant/prepare.h"
#include "fakequant/qparams.h"

namespace torchqat {
namespace {

std::tuple<at::Tensor, at::Tensor> forward_outputs(const at::Tensor& x) {
  return {at::empty_symint(x.sym_sizes(), x.options()), mask_like(x)};
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_forward_meta(
    const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, std::optional<int64_t> /*axis*/,
    std::optional<int64_t> /*group_size*/) {
  check_input_dtype("fake_quantize", x);
  check_quant_range("fake_quantize", quant_min, quant_max);
  check_same_device("fake_quantize", x, "x", scale, "scale");
  check_same_device("fake_quantize", x, "x", zero_point, "zero_point");
  return forward_outputs(x);
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_fp8_forward_meta(
    const at::Tensor& x, const at::Tensor& scale, c10::string_view fmt,
    std::optional<int64_t> /*axis*/, std::optional<int64_t> /*group_size*/) {
  check_input_dtype("fake_quantize_fp8", x);
  check_same_device("fake_quantize_fp8", x, "x", scale, "scale");
  parse_fp8_format(std::string_view(fmt.data(), fmt.size()));
  return forward_outputs(x);
}

at::Tensor ste_backward_meta(const at::Tensor& grad, const at::Tensor& mask) {
  check_input_dtype("ste_backward", grad, "grad");
  check_same_device("ste_backward", grad, "grad", mask, "mask");
  return at::empty_symint(grad.sym_sizes(), grad.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, Meta, m) {
  m.impl("fake_quantize_forward", &fake_quantize_forward_meta);
  m.impl("fake_quantize_fp8_forward", &fake_quantize_fp8_forward_meta);
  m.impl("ste_backward", &ste_backward_meta);
}

}  // namespace torchqat
