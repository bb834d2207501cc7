#include "fakequant/lsq_prepare.h"

#include "fakequant/qparams.h"

namespace torchqat {

LsqOperands prepare_lsq(const char* op, const at::Tensor& x, const at::Tensor& scale,
                        const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                        std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  const auto layout =
      check_affine_operands(op, x, scale, zero_point, quant_min, quant_max, axis, group_size);

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

LsqBackwardCall prepare_lsq_backward(const char* op, const at::Tensor& grad, const at::Tensor& x,
                                     const at::Tensor& scale, const at::Tensor& zero_point,
                                     int64_t quant_min, int64_t quant_max,
                                     std::optional<double> grad_factor,
                                     std::optional<int64_t> axis,
                                     std::optional<int64_t> group_size) {
  LsqBackwardCall call;
  call.operands = prepare_lsq(op, x, scale, zero_point, quant_min, quant_max, axis, group_size);
  check_same_device(op, x, "x", grad, "grad");
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type(), op,
              ": grad must have x's shape and dtype (", x.sizes(), ", ", x.scalar_type(),
              "), got ", grad.sizes(), ", ", grad.scalar_type());
  call.grad_factor = resolve_grad_factor(op, grad_factor, call.operands.numel, scale.numel(),
                                         quant_min, quant_max);
  call.grad = grad.contiguous();
  call.grad_x = at::empty_like(call.operands.x, at::MemoryFormat::Contiguous);
  return call;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> LsqBackwardCall::finish(
    const at::Tensor& scale_sum, const at::Tensor& outside_sum, const at::Tensor& scale,
    const at::Tensor& zero_point) const {
  const auto scale_double = operands.scale.to(at::kDouble).reshape(-1);
  at::Tensor d_scale = (scale_sum * grad_factor).to(scale.scalar_type()).reshape(scale.sizes());
  const auto zp_type = at::isFloatingType(zero_point.scalar_type()) ? zero_point.scalar_type()
                                                                    : at::kFloat;
  at::Tensor d_zero_point =
      (outside_sum * scale_double * -grad_factor).to(zp_type).reshape(zero_point.sizes());
  return {grad_x, d_scale, d_zero_point};
}

}  // namespace torchqat
