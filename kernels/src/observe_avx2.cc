// AVX2 variant of the observer kernels (see minmax_walk.h).
#include "avx2_ops.h"
#include "minmax_walk.h"
#include <vector>

#include "torchqat/kernels/histogram.h"
#include "variants.h"

namespace torchqat::kernels {

// Bin indices 8 at a time in double precision (bitwise the scalar formula:
// trunc((v - lo) * scale) clamped to [0, bins - 1]); non-finite lanes go to
// an extra slot. Increments alternate between two tile-local tables so runs
// of equal values (ReLU's zeros) do not chain on one counter.
int64_t histogram_add_avx2(DType dtype, const void* x, int64_t begin, int64_t end,
                           int64_t* counts, int64_t bins, double lo, double hi) {
  if (dtype != DType::kFloat32) return histogram_add(dtype, x, begin, end, counts, bins, {lo, hi});
  const float* p = static_cast<const float*>(x);
  const double scale = double(bins) / (hi - lo);
  std::vector<uint32_t> even(size_t(bins + 1), 0), odd(size_t(bins + 1), 0);
  const __m256d vlo = _mm256_set1_pd(lo), vscale = _mm256_set1_pd(scale);
  const __m256i last = _mm256_set1_epi32(int32_t(bins - 1)), dump = _mm256_set1_epi32(int32_t(bins));
  int64_t nonfinite = 0;
  int64_t i = begin;
  const auto flush = [&] {
    for (int64_t b = 0; b < bins; ++b) {
      counts[b] += int64_t(even[size_t(b)]) + int64_t(odd[size_t(b)]);
      even[size_t(b)] = odd[size_t(b)] = 0;
    }
    nonfinite += int64_t(even[size_t(bins)]) + int64_t(odd[size_t(bins)]);
    even[size_t(bins)] = odd[size_t(bins)] = 0;
  };
  constexpr int64_t kFlushEvery = int64_t{1} << 31;  // before a uint32 counter can overflow
  while (i + 8 <= end) {
    const int64_t chunk_end = std::min(end, i + kFlushEvery);
    for (; i + 8 <= chunk_end; i += 8) {
      const __m256 v = _mm256_loadu_ps(p + i);
      const __m256 finite = _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_EQ_OQ);
      const __m128i b_lo = _mm256_cvttpd_epi32(
          _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vlo), vscale));
      const __m128i b_hi = _mm256_cvttpd_epi32(
          _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vlo), vscale));
      __m256i b = _mm256_set_m128i(b_hi, b_lo);
      b = _mm256_min_epi32(_mm256_max_epi32(b, _mm256_setzero_si256()), last);
      b = _mm256_blendv_epi8(dump, b, _mm256_castps_si256(finite));
      // Indices leave the vector register in 64-bit pairs: a 32-byte store
      // reloaded as eight 4-byte loads stalls store-to-load forwarding.
      const __m128i b03 = _mm256_castsi256_si128(b), b47 = _mm256_extracti128_si256(b, 1);
      const uint64_t i01 = uint64_t(_mm_cvtsi128_si64(b03)), i23 = uint64_t(_mm_extract_epi64(b03, 1));
      const uint64_t i45 = uint64_t(_mm_cvtsi128_si64(b47)), i67 = uint64_t(_mm_extract_epi64(b47, 1));
      ++even[uint32_t(i01)]; ++odd[i01 >> 32];
      ++even[uint32_t(i23)]; ++odd[i23 >> 32];
      ++even[uint32_t(i45)]; ++odd[i45 >> 32];
      ++even[uint32_t(i67)]; ++odd[i67 >> 32];
    }
    flush();
  }
  return nonfinite + histogram_add(dtype, x, i, end, counts, bins, {lo, hi});
}

ObserverKernels avx2_observer_kernels() {
  return {Isa::kAvx2, &minmax_range<Avx2Ops>, &minmax_channels<Avx2Ops>, &histogram_add_avx2};
}

}  // namespace torchqat::kernels
