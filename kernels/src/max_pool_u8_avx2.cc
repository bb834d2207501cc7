// AVX2 variant of the uint8 max pooling (max_pool_u8.h): 32 channels per
// vpmaxub, the window's taps read in turn. Called only when cpu_features().avx2.
#include <immintrin.h>

#include <algorithm>

#include "gemm_variants.h"
#include "max_pool_window.h"

namespace torchqat::kernels {
namespace {

void max_pool_u8_avx2(const MaxPoolU8Args& a, int64_t row_begin, int64_t row_end) {
  const int64_t vector_channels = a.channels / 32 * 32;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / a.out_h, oy = row % a.out_h;
    for (int64_t ox = 0; ox < a.out_w; ++ox) {
      uint8_t* out = a.out + ((b * a.out_h + oy) * a.out_w + ox) * a.channels;
      for (int64_t c = 0; c < vector_channels; c += 32) {
        __m256i m = _mm256_setzero_si256();
        for_each_tap(a, b, oy, ox, [&](const uint8_t* in) {
          m = _mm256_max_epu8(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + c)));
        });
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), m);
      }
      if (vector_channels == a.channels) continue;
      std::fill(out + vector_channels, out + a.channels, uint8_t{0});
      for_each_tap(a, b, oy, ox, [&](const uint8_t* in) {
        for (int64_t c = vector_channels; c < a.channels; ++c) out[c] = std::max(out[c], in[c]);
      });
    }
  }
}

}  // namespace

MaxPoolU8Kernels avx2_max_pool_u8_kernels() { return {Isa::kAvx2, &max_pool_u8_avx2}; }

}  // namespace torchqat::kernels
