// Torch-free INT8 depthwise Conv2d for the deployed model (groups == channels,
// one filter per channel), on a channels-last (NHWC) uint8 input:
//
//   acc[b, oy, ox, c] = sum_{ky, kx} (x[b, iy, ix, c] - x_zero) * w[c, ky, kx]  (exact, int32)
//   iy = oy * stride_h - pad_h + ky * dilation_h   (ix likewise)
//
// where a tap in the padding reads x_zero (it stands for a real 0, so it adds
// nothing). The kernels compute sum x * w with the padding read as x_zero and
// subtract x_zero * sum_taps w[c] (the packed weight sums) once per output,
// as the GEMM does with its column sums; the result then goes through the
// GEMM's epilogue (gemm_epilogue: dequantize to float, or requantize to uint8,
// bias, ReLU), output pixel by output pixel, so the rounding is the GEMM's.
//
// Weights are packed once (at export): for blocks of kDepthwiseBlock channels
// and pairs of taps (t = ky * kw + kx; an odd count padded with a zero tap),
// the int8 pairs (w[c, 2j], w[c, 2j + 1]) of each channel in order. A pair
// times its two inputs is one vpmaddwd lane, whose int32 pair sum cannot
// overflow (255 * 128 * 2 < 2^31).
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/gemm_int8.h"

namespace torchqat::kernels {

inline constexpr int64_t kDepthwiseBlock = 16;  // channels per packed block
inline constexpr int64_t kMaxDepthwiseTaps = int64_t{1} << 16;  // 255 * 128 * 2^16 < 2^31

inline int64_t depthwise_tap_pairs(int64_t taps) { return (taps + 1) / 2; }
inline int64_t depthwise_blocks(int64_t channels) { return (channels + kDepthwiseBlock - 1) / kDepthwiseBlock; }
inline int64_t depthwise_packed_bytes(int64_t channels, int64_t taps) {
  return depthwise_blocks(channels) * depthwise_tap_pairs(taps) * kDepthwiseBlock * 2;
}

// Packs w[c, t] (channels x taps, row-major) into data[depthwise_packed_bytes]
// and weight_sums[c] = sum_t w[c, t].
void pack_depthwise_int8_weights(const int8_t* w, int64_t channels, int64_t taps, int8_t* data,
                                 int32_t* weight_sums);

struct DepthwiseInt8Args {
  const uint8_t* x = nullptr;  // [batch, height, width, channels]
  int64_t batch = 0, height = 0, width = 0, channels = 0;
  int64_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;
  const int8_t* weights = nullptr;  // packed
  // The epilogue, as the GEMM's: a_zero is x_zero, b.col_sums the weight sums,
  // b.n the channels; output pixel p (over batch, out_h, out_w) is row m = p,
  // channel c column n = c, with ldc = channels. Its a, lda, b.data, m are unused.
  GemmInt8Args epilogue;
  int64_t taps() const { return kernel_h * kernel_w; }
};

// Computes output rows [row_begin, row_end) (a row: one (b, oy), all ox and channels).
using DepthwiseInt8Fn = void (*)(const DepthwiseInt8Args& args, int64_t row_begin, int64_t row_end);

struct DepthwiseInt8Kernels {
  Isa isa;
  DepthwiseInt8Fn conv;
};

// The reference: int64 sums straight from the definition above.
void depthwise_int8_reference(const DepthwiseInt8Args& args, int64_t row_begin, int64_t row_end);

// Every compiled variant, reference first; the active ISA's variant.
const std::vector<DepthwiseInt8Kernels>& depthwise_int8_variants();
const DepthwiseInt8Kernels& depthwise_int8_kernels();

}  // namespace torchqat::kernels
