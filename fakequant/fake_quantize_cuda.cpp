// CUDA kernels of the fake-quant ops: launches on the current stream, with
// scale and zero-point read on the device (no host synchronisation).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fakequant/prepare.h"
#include "torchqat/kernels/fake_quant_cuda.h"

namespace torchqat {
namespace {

std::tuple<at::Tensor, at::Tensor> fake_quantize_forward_cuda(
    const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, std::optional<int64_t> axis,
    std::optional<int64_t> group_size) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto call = prepare_affine(x, scale, zero_point, quant_min, quant_max, axis, group_size);
  C10_CUDA_CHECK(kernels::cuda::affine_fake_quant(call.args, call.dtype, call.x_data(),
                                                  call.output_data(), call.mask_data(), call.numel,
                                                  c10::cuda::getCurrentCUDAStream()));
  return {call.output, call.mask};
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_fp8_forward_cuda(
    const at::Tensor& x, const at::Tensor& scale, c10::string_view fmt,
    std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto call = prepare_fp8(x, scale, fmt, axis, group_size);
  C10_CUDA_CHECK(kernels::cuda::fp8_fake_quant(call.args, call.dtype, call.x_data(),
                                               call.output_data(), call.mask_data(), call.numel,
                                               c10::cuda::getCurrentCUDAStream()));
  return {call.output, call.mask};
}

at::Tensor ste_backward_cuda(const at::Tensor& grad, const at::Tensor& mask) {
  const c10::cuda::CUDAGuard guard(grad.device());
  auto call = prepare_ste_backward(grad, mask);
  C10_CUDA_CHECK(kernels::cuda::masked_grad(
      call.elem_size, call.grad.const_data_ptr(), call.mask.const_data_ptr<uint8_t>(),
      call.output.mutable_data_ptr(), call.numel, c10::cuda::getCurrentCUDAStream()));
  return call.output;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CUDA, m) {
  m.impl("fake_quantize_forward", &fake_quantize_forward_cuda);
  m.impl("fake_quantize_fp8_forward", &fake_quantize_fp8_forward_cuda);
  m.impl("ste_backward", &ste_backward_cuda);
}

}  // namespace torchqat
