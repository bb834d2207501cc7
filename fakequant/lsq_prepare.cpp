#include "fakequant/lsq_prepare.h"

#include "fakequant/qparams.h"

namespace torchqat {

LsqOperands prepare_lsq(const char* op, const at::Tensor& x, const at::Tensor& scale,
                        const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                        std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  check_input_dtype(op, x);
  check_quant_range(op, quant_min, quant_max);
  check_same_device(op, x, "x", scale, "scale");
  check_same_device(op, x, "x", zero_point, "zero_point");
  const auto layout = resolve_layout(op, "scale", x, scale, axis, group_size);
  resolve_layout(op, "zero_point", x, zero_point, axis, group_size);

  LsqOperands o;
  o.scale = checked_scale(op, scale);
  o.zero_point = rounded_zero_point(op, zero_point, quant_min, quant_max);
  o.x = x.contiguous();
  o.dtype = kernel_dtype(o.x);
  o.numel = o.x.numel();
  o.outer = o.numel / (layout.channels * layout.inner);
  o.args = {o.scale.const_data_ptr<float>(), o.zero_point.const_data_ptr<float>(),
            float(quant_min), float(quant_max), layout};
  return o;
}

void check_lsq_grad(const char* op, const at::Tensor& grad, const at::Tensor& x) {
  check_same_device(op, x, "x", grad, "grad");
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type(), op,
              ": grad must have x's shape and dtype (", x.sizes(), ", ", x.scalar_type(),
              "), got ", grad.sizes(), ", ", grad.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> lsq_param_grads(const at::Tensor& scale_sum,
                                                   const at::Tensor& outside_sum,
                                                   const LsqOperands& operands,
                                                   const at::Tensor& scale,
                                                   const at::Tensor& zero_point,
                                                   double grad_factor) {
  const auto scale_double = operands.scale.to(at::kDouble).reshape(-1);
  at::Tensor d_scale = (scale_sum * grad_factor).to(scale.scalar_type()).reshape(scale.sizes());
  const auto zp_type = at::isFloatingType(zero_point.scalar_type()) ? zero_point.scalar_type()
                                                                    : at::kFloat;
  at::Tensor d_zero_point =
      (outside_sum * scale_double * -grad_factor).to(zp_type).reshape(zero_point.sizes());
  return {d_scale, d_zero_point};
}

}  // namespace torchqat
