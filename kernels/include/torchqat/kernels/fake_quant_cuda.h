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

// LSQ backward: grad_x and, per channel, the sums of fake_quant.h's LsqSums
// (written, not added; device pointers of `channels` doubles each). Needs
// lsq_workspace_doubles(numel, channels) doubles of device workspace. Each
// sum is reduced in a fixed order: the same on every run.
int64_t lsq_workspace_doubles(int64_t numel, int64_t channels);
cudaError_t lsq_backward(const AffineArgs& args, DType dtype, const void* x, const void* grad,
                         void* grad_x, double* workspace, LsqSums sums, int64_t numel,
                         cudaStream_t stream);

// quant_math.h's choose_qparams over n ranges.
cudaError_t choose_qparams(const float* min_val, const float* max_val, int64_t n,
                           int64_t quant_min, int64_t quant_max, bool symmetric, float* scale,
                           int32_t* zero_point, cudaStream_t stream);

}  // namespace torchqat::kernels::cuda
