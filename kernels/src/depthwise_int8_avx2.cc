// AVX2 INT8 depthwise Conv2d: 16 channels of one output pixel at a time, two
// taps per vpmaddwd (the inputs of the pair interleaved as bytes, then
// widened), exact int32 accumulation, the GEMM's vector epilogue.
#include <immintrin.h>

#include <vector>

#include "torchqat/kernels/depthwise_int8.h"
#include "epilogue_avx2.h"
#include "gemm_variants.h"

namespace torchqat::kernels {
namespace {

using avx2::Columns8;
using avx2::epilogue8;

// sum_t x_t * w_t for the 16 channels at `channel` (padding read as x_zero):
// channels 0-7 in *lo, 8-15 in *hi. kPairs > 0 fixes the tap pair count at
// compile time (3x3: 5), 0 reads it from `pairs`.
template <int kPairs>
void block_sums(const uint8_t* const* taps, int64_t channel, const int16_t* w16, int64_t pairs, __m256i* lo,
                __m256i* hi) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  const int64_t n = kPairs > 0 ? kPairs : pairs;
  for (int64_t j = 0; j < n; ++j) {
    const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[2 * j] + channel));
    const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[2 * j + 1] + channel));
    const __m256i a0 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x0, x1));  // (x0[c], x1[c]), c = 0..7
    const __m256i a1 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(x0, x1));  // c = 8..15
    const __m256i* w = reinterpret_cast<const __m256i*>(w16 + j * 32);
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, _mm256_loadu_si256(w)));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, _mm256_loadu_si256(w + 1)));
  }
  *lo = acc0;
  *hi = acc1;
}

template <int kPairs>
void depthwise_rows(const DepthwiseInt8Args& args, int64_t row_begin, int64_t row_end) {
  const GemmInt8Args& ep = args.epilogue;
  const int64_t taps = args.taps(), pairs = depthwise_tap_pairs(taps), channels = args.channels;
  const int64_t full = channels / kDepthwiseBlock;  // blocks of 16 real channels
  // The full blocks' weights widened to int16 once per call.
  std::vector<int16_t> w16(size_t(full * pairs * 32));
  for (int64_t i = 0; i < full * pairs * 32; i += 16) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(args.weights + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w16.data() + i), _mm256_cvtepi8_epi16(raw));
  }
  std::vector<Columns8> columns;
  columns.reserve(size_t(full * 2));
  for (int64_t n = 0; n < full * kDepthwiseBlock; n += 8) columns.emplace_back(ep, n);
  const std::vector<uint8_t> padding(size_t(channels), uint8_t(ep.a_zero));  // what a tap off the input reads
  std::vector<const uint8_t*> tap(size_t(pairs * 2), padding.data());       // an odd count's last: weight 0
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / args.out_h, oy = row % args.out_h;
    for (int64_t ox = 0; ox < args.out_w; ++ox) {
      for (int64_t ky = 0; ky < args.kernel_h; ++ky) {
        const int64_t iy = oy * args.stride_h - args.pad_h + ky * args.dilation_h;
        for (int64_t kx = 0; kx < args.kernel_w; ++kx) {
          const int64_t ix = ox * args.stride_w - args.pad_w + kx * args.dilation_w;
          const bool inside = iy >= 0 && iy < args.height && ix >= 0 && ix < args.width;
          tap[size_t(ky * args.kernel_w + kx)] =
              inside ? args.x + ((b * args.height + iy) * args.width + ix) * channels : padding.data();
        }
      }
      const int64_t m = row * args.out_w + ox;
      for (int64_t block = 0; block < full; ++block) {
        __m256i lo, hi;
        block_sums<kPairs>(tap.data(), block * kDepthwiseBlock, w16.data() + block * pairs * 32, pairs, &lo, &hi);
        epilogue8(ep, columns[size_t(2 * block)], m, block * kDepthwiseBlock, lo);
        epilogue8(ep, columns[size_t(2 * block + 1)], m, block * kDepthwiseBlock + 8, hi);
      }
      for (int64_t c = full * kDepthwiseBlock; c < channels; ++c) {  // the last, partial block
        const int8_t* w = args.weights + full * pairs * kDepthwiseBlock * 2 + (c % kDepthwiseBlock) * 2;
        int32_t acc = 0;
        for (int64_t t = 0; t < taps; ++t) acc += int32_t(tap[size_t(t)][c]) * w[(t / 2) * kDepthwiseBlock * 2 + t % 2];
        gemm_epilogue(ep, m, c, acc - ep.a_zero * ep.b.col_sums[c]);
      }
    }
  }
}

void depthwise_avx2(const DepthwiseInt8Args& args, int64_t row_begin, int64_t row_end) {
  if (depthwise_tap_pairs(args.taps()) == 5) {
    depthwise_rows<5>(args, row_begin, row_end);  // 3x3
  } else {
    depthwise_rows<0>(args, row_begin, row_end);
  }
}

}  // namespace

DepthwiseInt8Kernels avx2_depthwise_int8_kernels() { return {Isa::kAvx2, &depthwise_avx2}; }

}  // namespace torchqat::kernels
