// CPU kernels of the fake-quant ops: the run-time-selected kernel variant
// over at::parallel_for, split on mask-byte boundaries so that no two
// threads write the same byte.
#include <torch/library.h>

#include "fakequant/cpu_parallel.h"
#include "fakequant/prepare.h"

namespace torchqat {
namespace {

// The padding bits of the mask's last byte are defined (zero), so that equal
// inputs give equal masks.
void clear_mask_padding(FakeQuantCall& call) {
  if (call.numel % 8 != 0) call.mask_data()[call.mask.numel() - 1] = 0;
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_forward_cpu(
    const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, std::optional<int64_t> axis,
    std::optional<int64_t> group_size) {
  auto call = prepare_affine(x, scale, zero_point, quant_min, quant_max, axis, group_size);
  clear_mask_padding(call);
  const auto kernel = kernels::fake_quant_kernels().affine;
  parallel_over_elements(call.numel, [&](int64_t begin, int64_t end) {
    kernel(call.args, call.dtype, call.x_data(), call.output_data(), call.mask_data(), begin, end);
  });
  return {call.output, call.mask};
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_fp8_forward_cpu(
    const at::Tensor& x, const at::Tensor& scale, c10::string_view fmt,
    std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  auto call = prepare_fp8(x, scale, fmt, axis, group_size);
  clear_mask_padding(call);
  const auto kernel = kernels::fake_quant_kernels().fp8;
  parallel_over_elements(call.numel, [&](int64_t begin, int64_t end) {
    kernel(call.args, call.dtype, call.x_data(), call.output_data(), call.mask_data(), begin, end);
  });
  return {call.output, call.mask};
}

at::Tensor ste_backward_cpu(const at::Tensor& grad, const at::Tensor& mask) {
  auto call = prepare_ste_backward(grad, mask);
  const auto kernel = kernels::fake_quant_kernels().masked_grad;
  parallel_over_elements(call.numel, [&](int64_t begin, int64_t end) {
    kernel(call.elem_size, call.grad.const_data_ptr(), call.mask.const_data_ptr<uint8_t>(),
           call.output.mutable_data_ptr(), begin, end);
  });
  return call.output;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("fake_quantize_forward", &fake_quantize_forward_cpu);
  m.impl("fake_quantize_fp8_forward", &fake_quantize_fp8_forward_cpu);
  m.impl("ste_backward", &ste_backward_cpu);
}

}  // namespace torchqat
