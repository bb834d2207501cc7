// CUDA kernels of the LSQ ops: launches on the current stream, no host
// synchronisation (scale and zero point are checked and rounded on the device).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fakequant/lsq_prepare.h"
#include "fakequant/qparams.h"
#include "torchqat/kernels/fake_quant_cuda.h"

namespace torchqat {
namespace {

constexpr const char* kOp = "lsq_fake_quantize";

at::Tensor lsq_forward_cuda(const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                            std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  const c10::cuda::CUDAGuard guard(x.device());
  const auto o = prepare_lsq(kOp, x, scale, zero_point, quant_min, quant_max, axis, group_size);
  at::Tensor y = at::empty_like(o.x, at::MemoryFormat::Contiguous);
  C10_CUDA_CHECK(kernels::cuda::affine_fake_quant(o.args, o.dtype, o.x.const_data_ptr(),
                                                  y.mutable_data_ptr(), nullptr, o.numel,
                                                  c10::cuda::getCurrentCUDAStream()));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsq_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
    std::optional<double> grad_factor, std::optional<int64_t> axis,
    std::optional<int64_t> group_size) {
  const c10::cuda::CUDAGuard guard(x.device());
  const auto o = prepare_lsq(kOp, x, scale, zero_point, quant_min, quant_max, axis, group_size);
  check_lsq_grad(kOp, grad, x);
  const double factor =
      resolve_grad_factor(kOp, grad_factor, o.numel, scale.numel(), quant_min, quant_max);
  const at::Tensor g = grad.contiguous();
  at::Tensor grad_x = at::empty_like(o.x, at::MemoryFormat::Contiguous);
  const int64_t channels = o.args.layout.channels;
  const auto opts = x.options().dtype(at::kDouble);
  at::Tensor workspace =
      at::empty({kernels::cuda::lsq_workspace_doubles(o.numel, channels)}, opts);
  at::Tensor scale_sum = at::empty({channels}, opts), outside_sum = at::empty({channels}, opts);
  C10_CUDA_CHECK(kernels::cuda::lsq_backward(
      o.args, o.dtype, o.x.const_data_ptr(), g.const_data_ptr(), grad_x.mutable_data_ptr(),
      workspace.mutable_data_ptr<double>(),
      {scale_sum.mutable_data_ptr<double>(), outside_sum.mutable_data_ptr<double>()}, o.numel,
      c10::cuda::getCurrentCUDAStream()));
  auto [d_scale, d_zero_point] =
      lsq_param_grads(scale_sum, outside_sum, o, scale, zero_point, factor);
  return {grad_x, d_scale, d_zero_point};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CUDA, m) {
  m.impl("lsq_fake_quantize_forward", &lsq_forward_cuda);
  m.impl("lsq_fake_quantize_backward", &lsq_backward_cuda);
}

}  // namespace torchqat
