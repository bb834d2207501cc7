// CUDA LSQ backward and choose_qparams. The backward splits each channel's
// elements into fixed pieces; a block reduces a piece (shared-memory tree, in
// double), a second kernel adds a channel's pieces in order: deterministic.
#include <algorithm>

#include "../src/elements.h"
#include "torchqat/kernels/fake_quant_cuda.h"
#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels::cuda {
namespace {

constexpr int64_t kPiece = 4096;  // elements of one channel per block
constexpr int kMaxThreads = 256;

int64_t pieces_per_channel(int64_t per_channel) { return (per_channel + kPiece - 1) / kPiece; }

int threads_for(int64_t per_channel) {
  int t = 32;
  while (t < kMaxThreads && t < per_channel) t *= 2;
  return t;
}

template <class E>
__global__ void lsq_pieces_kernel(AffineArgs args, const typename E::T* __restrict__ x,
                                  const typename E::T* __restrict__ g,
                                  typename E::T* __restrict__ gx, double* __restrict__ partial,
                                  int64_t per_channel, int64_t pieces) {
  extern __shared__ double shared[];  // [2 * blockDim.x]
  const int64_t c = blockIdx.x / pieces;
  const int64_t piece = blockIdx.x % pieces;
  const int64_t inner = args.layout.inner;
  const auto p = make_affine_params<ScalarOps>(args.scale[c], args.zero_point[c], args.quant_min,
                                               args.quant_max);
  const int64_t end = min((piece + 1) * kPiece, per_channel);
  float scale_sum = 0.0f, outside_sum = 0.0f;
  for (int64_t j = piece * kPiece + threadIdx.x; j < end; j += blockDim.x) {
    const int64_t flat = ((j / inner) * args.layout.channels + c) * inner + j % inner;
    const auto t = lsq_backward_terms<ScalarOps>(E::load(x[flat]), E::load(g[flat]), p);
    gx[flat] = E::store(t.grad_x);
    scale_sum += t.scale_term;
    outside_sum += t.outside_grad;
  }
  shared[threadIdx.x] = scale_sum;
  shared[blockDim.x + threadIdx.x] = outside_sum;
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    __syncthreads();
    if (threadIdx.x < half) {
      shared[threadIdx.x] += shared[threadIdx.x + half];
      shared[blockDim.x + threadIdx.x] += shared[blockDim.x + threadIdx.x + half];
    }
  }
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = shared[0];
    partial[2 * blockIdx.x + 1] = shared[blockDim.x];
  }
}

__global__ void lsq_channel_sums_kernel(const double* __restrict__ partial, int64_t channels,
                                        int64_t pieces, double* __restrict__ scale_sum,
                                        double* __restrict__ outside_sum) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  double s = 0.0, o = 0.0;
  for (int64_t piece = 0; piece < pieces; ++piece) {
    s += partial[2 * (c * pieces + piece)];
    o += partial[2 * (c * pieces + piece) + 1];
  }
  scale_sum[c] = s;
  outside_sum[c] = o;
}

__global__ void choose_qparams_kernel(const float* __restrict__ lo, const float* __restrict__ hi,
                                      int64_t n, int64_t qmin, int64_t qmax, bool symmetric,
                                      float* __restrict__ scale, int32_t* __restrict__ zp) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const auto q = kernels::choose_qparams(lo[i], hi[i], qmin, qmax, symmetric);
  scale[i] = q.scale;
  zp[i] = q.zero_point;
}

}  // namespace

int64_t lsq_workspace_doubles(int64_t numel, int64_t channels) {
  const int64_t per_channel = numel / std::max<int64_t>(channels, 1);
  return 2 * channels * pieces_per_channel(per_channel);
}

cudaError_t lsq_backward(const AffineArgs& args, DType dtype, const void* x, const void* grad,
                         void* grad_x, double* workspace, LsqSums sums, int64_t numel,
                         cudaStream_t stream) {
  const int64_t channels = args.layout.channels;
  const int64_t per_channel = numel / channels;
  const int64_t pieces = pieces_per_channel(per_channel);
  if (numel > 0) {
    const int threads = threads_for(per_channel);
    const dim3 grid(unsigned(channels * pieces));
    const size_t smem = 2 * threads * sizeof(double);
    switch (dtype) {
      case DType::kFloat32:
        lsq_pieces_kernel<F32><<<grid, threads, smem, stream>>>(
            args, static_cast<const float*>(x), static_cast<const float*>(grad),
            static_cast<float*>(grad_x), workspace, per_channel, pieces);
        break;
      case DType::kFloat16:
        lsq_pieces_kernel<F16><<<grid, threads, smem, stream>>>(
            args, static_cast<const uint16_t*>(x), static_cast<const uint16_t*>(grad),
            static_cast<uint16_t*>(grad_x), workspace, per_channel, pieces);
        break;
      case DType::kBFloat16:
        lsq_pieces_kernel<BF16><<<grid, threads, smem, stream>>>(
            args, static_cast<const uint16_t*>(x), static_cast<const uint16_t*>(grad),
            static_cast<uint16_t*>(grad_x), workspace, per_channel, pieces);
        break;
    }
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  const int threads = 256;
  const dim3 grid(unsigned((channels + threads - 1) / threads));
  lsq_channel_sums_kernel<<<grid, threads, 0, stream>>>(workspace, channels, numel > 0 ? pieces : 0,
                                                        sums.scale_sum, sums.outside_sum);
  return cudaGetLastError();
}

cudaError_t choose_qparams(const float* min_val, const float* max_val, int64_t n,
                           int64_t quant_min, int64_t quant_max, bool symmetric, float* scale,
                           int32_t* zero_point, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  choose_qparams_kernel<<<unsigned((n + threads - 1) / threads), threads, 0, stream>>>(
      min_val, max_val, n, quant_min, quant_max, symmetric, scale, zero_point);
  return cudaGetLastError();
}

}  // namespace torchqat::kernels::cuda
