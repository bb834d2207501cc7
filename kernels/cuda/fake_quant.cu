// CUDA fake-quant kernels: one thread per mask byte (8 consecutive elements),
// the math from quant_math.h evaluated with ScalarOps on the device.
#include <algorithm>

#include "../src/elements.h"
#include "torchqat/kernels/fake_quant_cuda.h"
#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride beyond this

int64_t blocks_for(int64_t mask_bytes) {
  return std::min<int64_t>((mask_bytes + kThreads - 1) / kThreads, kMaxBlocks);
}

struct AffineQuant {
  AffineArgs args;
  __device__ AffineParams<ScalarOps> at(int64_t c) const {
    return make_affine_params<ScalarOps>(args.scale[c], args.zero_point[c], args.quant_min,
                                         args.quant_max);
  }
  __device__ float apply(float x, const AffineParams<ScalarOps>& p, bool* in_range) const {
    return kernels::affine_fake_quant<ScalarOps>(x, p, in_range);
  }
};

struct Fp8Quant {
  Fp8Args args;
  __device__ Fp8Params<ScalarOps> at(int64_t c) const {
    return make_fp8_params<ScalarOps>(args.scale[c], fp8_spec(args.format));
  }
  __device__ float apply(float x, const Fp8Params<ScalarOps>& p, bool* in_range) const {
    return kernels::fp8_fake_quant<ScalarOps>(x, p, in_range);
  }
};

template <class E, class Quant>
__global__ void fake_quant_kernel(Quant quant, const typename E::T* __restrict__ x,
                                  typename E::T* __restrict__ y, uint8_t* __restrict__ mask,
                                  int64_t numel, ChannelLayout layout) {
  const int64_t bytes = (numel + 7) / 8;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < bytes; b += stride) {
    const int64_t first = b * 8;
    const int64_t run = first / layout.inner;
    int64_t offset = first - run * layout.inner;
    int64_t channel = run % layout.channels;
    auto params = quant.at(channel);
    uint8_t bits = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t i = first + j;
      if (i < numel) {
        if (offset == layout.inner) {  // crossed into the next run
          offset = 0;
          if (++channel == layout.channels) channel = 0;
          params = quant.at(channel);
        }
        bool in_range;
        y[i] = E::store(quant.apply(E::load(x[i]), params, &in_range));
        bits |= uint8_t(in_range) << j;
        ++offset;
      }
    }
    if (mask) mask[b] = bits;
  }
}

template <class T>
__global__ void masked_grad_kernel(const T* __restrict__ g, const uint8_t* __restrict__ mask,
                                   T* __restrict__ out, int64_t numel) {
  const int64_t bytes = (numel + 7) / 8;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < bytes; b += stride) {
    const uint8_t bits = mask[b];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t i = b * 8 + j;
      if (i < numel) out[i] = (bits >> j) & 1 ? g[i] : T(0);
    }
  }
}

template <class Quant>
cudaError_t launch(const Quant& quant, DType dtype, const void* x, void* y, uint8_t* mask,
                   int64_t numel, ChannelLayout layout, cudaStream_t stream) {
  if (numel == 0) return cudaSuccess;
  const dim3 grid(unsigned(blocks_for(mask_bytes(numel))));
  switch (dtype) {
    case DType::kFloat32:
      fake_quant_kernel<F32><<<grid, kThreads, 0, stream>>>(
          quant, static_cast<const float*>(x), static_cast<float*>(y), mask, numel, layout);
      break;
    case DType::kFloat16:
      fake_quant_kernel<F16><<<grid, kThreads, 0, stream>>>(
          quant, static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y), mask, numel, layout);
      break;
    case DType::kBFloat16:
      fake_quant_kernel<BF16><<<grid, kThreads, 0, stream>>>(
          quant, static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y), mask, numel, layout);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t affine_fake_quant(const AffineArgs& args, DType dtype, const void* x, void* y,
                              uint8_t* mask, int64_t numel, cudaStream_t stream) {
  return launch(AffineQuant{args}, dtype, x, y, mask, numel, args.layout, stream);
}

cudaError_t fp8_fake_quant(const Fp8Args& args, DType dtype, const void* x, void* y,
                           uint8_t* mask, int64_t numel, cudaStream_t stream) {
  return launch(Fp8Quant{args}, dtype, x, y, mask, numel, args.layout, stream);
}

cudaError_t masked_grad(size_t elem_size, const void* grad_out, const uint8_t* mask,
                        void* grad_in, int64_t numel, cudaStream_t stream) {
  if (numel == 0) return cudaSuccess;
  const dim3 grid(unsigned(blocks_for(mask_bytes(numel))));
  if (elem_size == 4) {
    masked_grad_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const uint32_t*>(grad_out),
                                                      mask, static_cast<uint32_t*>(grad_in), numel);
  } else {
    masked_grad_kernel<<<grid, kThreads, 0, stream>>>(static_cast<const uint16_t*>(grad_out),
                                                      mask, static_cast<uint16_t*>(grad_in), numel);
  }
  return cudaGetLastError();
}

}  // namespace torchqat::kernels::cuda
