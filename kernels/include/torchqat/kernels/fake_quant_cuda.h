// CUDA launches of the fake-quant kernels (torch-free). Pointers are device
// pointers, including args.scale and args.zero_point; the same assumptions as
// fake_quant.h hold. Each returns the launch's error code.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels::cuda {

cudaError_t affine_fake_quant(const AffineArgs& args, DType dtype, const void* x, void* y,
                              uint8_t* mask, int64_t numel, cudaStream_t stream);
cudaError_t fp8_fake_quant(const Fp8Args& args, DType dtype, const void* x, void* y,
                           uint8_t* mask, int64_t numel, cudaStream_t stream);
cudaError_t masked_grad(size_t elem_size, const void* grad_out, const uint8_t* mask,
                        void* grad_in, int64_t numel, cudaStream_t stream);

}  // namespace torchqat::kernels::cuda
