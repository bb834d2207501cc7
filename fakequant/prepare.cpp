#include "fakequant/prepare.h"

#include "fakequant/qparams.h"

namespace torchqat {
namespace {

constexpr const char* kAffineOp = "fake_quantize";
constexpr const char* kFp8Op = "fake_quantize_fp8";

void fill_common(FakeQuantCall& call, const at::Tensor& x) {
  call.x = x.contiguous();
  call.output = at::empty_like(call.x, at::MemoryFormat::Contiguous);
  call.mask = mask_like(call.x);
  call.dtype = kernel_dtype(call.x);
  call.numel = call.x.numel();
}

}  // namespace

at::Tensor mask_like(const at::Tensor& x) {
  return at::empty_symint({(x.sym_numel() + 7) / 8}, x.options().dtype(at::kByte));
}

AffineCall prepare_affine(const at::Tensor& x, const at::Tensor& scale,
                          const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                          std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  const auto layout = check_affine_operands(kAffineOp, x, scale, zero_point, quant_min, quant_max,
                                            axis, group_size);

  AffineCall call;
  call.scale = checked_scale(kAffineOp, scale);
  call.zero_point = checked_zero_point(kAffineOp, zero_point, quant_min, quant_max);
  fill_common(call, x);
  call.args = {call.scale.const_data_ptr<float>(), call.zero_point.const_data_ptr<float>(),
               float(quant_min), float(quant_max), layout};
  return call;
}

Fp8Call prepare_fp8(const at::Tensor& x, const at::Tensor& scale, c10::string_view fmt,
                    std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  check_input_dtype(kFp8Op, x);
  const auto format = parse_fp8_format(std::string_view(fmt.data(), fmt.size()));
  check_same_device(kFp8Op, x, "x", scale, "scale");
  const auto layout = resolve_layout(kFp8Op, "scale", x, scale, axis, group_size);

  Fp8Call call;
  call.scale = checked_scale(kFp8Op, scale);
  fill_common(call, x);
  call.args = {call.scale.const_data_ptr<float>(), format, layout};
  return call;
}

MaskedGradCall prepare_ste_backward(const at::Tensor& grad, const at::Tensor& mask) {
  constexpr const char* op = "ste_backward";
  check_input_dtype(op, grad, "grad");
  check_same_device(op, grad, "grad", mask, "mask");
  TORCH_CHECK(mask.scalar_type() == at::kByte && mask.dim() == 1, op,
              ": mask must be a 1-D uint8 tensor (from a fake-quant forward op), got ",
              mask.scalar_type(), " of shape ", mask.sizes());
  TORCH_CHECK(mask.numel() == kernels::mask_bytes(grad.numel()), op, ": mask has ", mask.numel(),
              " bytes but grad has ", grad.numel(), " elements (expected ",
              kernels::mask_bytes(grad.numel()), " bytes)");
  MaskedGradCall call;
  call.grad = grad.contiguous();
  call.mask = mask.contiguous();
  call.output = at::empty_like(call.grad, at::MemoryFormat::Contiguous);
  call.elem_size = grad.element_size();
  call.numel = grad.numel();
  return call;
}

}  // namespace torchqat
