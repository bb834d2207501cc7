// CUDA kernels of the LSQ ops: launches on the current stream, no host
// synchronisation (scale and zero point are checked and rounded on the device).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fakequant/lsq_prepare.h"
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
  const auto call = prepare_lsq_backward(kOp, grad, x, scale, zero_point, quant_min, quant_max,
                                         grad_factor, axis, group_size);
  const auto& o = call.operands;
  const int64_t channels = o.args.layout.channels;
  const auto opts = x.options().dtype(at::kDouble);
  at::Tensor workspace =
      at::empty({kernels::cuda::lsq_workspace_doubles(o.numel, channels)}, opts);
  at::Tensor scale_sum = at::empty({channels}, opts), outside_sum = at::empty({channels}, opts);
  C10_CUDA_CHECK(kernels::cuda::lsq_backward(
      o.args, o.dtype, o.x.const_data_ptr(), call.grad.const_data_ptr(),
      call.grad_x.mutable_data_ptr(),
      workspace.mutable_data_ptr<double>(),
      {scale_sum.mutable_data_ptr<double>(), outside_sum.mutable_data_ptr<double>()}, o.numel,
      c10::cuda::getCurrentCUDAStream()));
  return call.finish(scale_sum, outside_sum, scale, zero_point);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CUDA, m) {
  m.impl("lsq_fake_quantize_forward", &lsq_forward_cuda);
  m.impl("lsq_fake_quantize_backward", &lsq_backward_cuda);
}

}  // namespace torchqat
