// CUDA kernel of choose_qparams; ranges are checked with a device-side
// assertion (no host synchronisation).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fakequant/qparams_ops.h"
#include "torchqat/kernels/fake_quant_cuda.h"

namespace torchqat {
namespace {

std::tuple<at::Tensor, at::Tensor> choose_qparams_cuda(const at::Tensor& min_val,
                                                       const at::Tensor& max_val,
                                                       int64_t quant_min, int64_t quant_max,
                                                       bool symmetric) {
  const c10::cuda::CUDAGuard guard(min_val.device());
  check_ranges(min_val, max_val, quant_min, quant_max);
  const at::Tensor lo = min_val.detach().to(at::kFloat).contiguous();
  const at::Tensor hi = max_val.detach().to(at::kFloat).contiguous();
  at::_assert_async(at::logical_and(at::logical_and(lo.isfinite(), hi.isfinite()), lo.le(hi)).all(),
                    "torchqat: choose_qparams needs finite ranges with min_val <= max_val");
  at::Tensor scale = at::empty(lo.sizes(), lo.options());
  at::Tensor zero_point = at::empty(lo.sizes(), lo.options().dtype(at::kInt));
  C10_CUDA_CHECK(kernels::cuda::choose_qparams(
      lo.const_data_ptr<float>(), hi.const_data_ptr<float>(), lo.numel(), quant_min, quant_max,
      symmetric, scale.mutable_data_ptr<float>(), zero_point.mutable_data_ptr<int32_t>(),
      c10::cuda::getCurrentCUDAStream()));
  return {scale, zero_point};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CUDA, m) { m.impl("choose_qparams", &choose_qparams_cuda); }

}  // namespace torchqat
