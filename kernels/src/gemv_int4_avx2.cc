// AVX2 INT4 weight-only GEMV: 16 packed bytes -> 32 int4 weights -> float,
// FMA with the activations; four output rows share each activation load.
#include <immintrin.h>

#include <algorithm>

#include "avx2_ops.h"
#include "gemm_variants.h"
#include "torchqat/kernels/gemv_int4.h"

namespace torchqat::kernels {
namespace {

// 8 int4 values (sign-extended nibbles in 8 int8 lanes) as floats.
inline __m256 to_float8(__m128i i8) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(i8)); }

template <int kRowsUsed>
void rows_avx2(const GemvInt4Args& a, const float* x, int64_t n0, float* out) {
  const int64_t groups = a.k / a.group_size, blocks_per_group = a.group_size / kInt4Block;
  const __m128i low = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
  __m256 acc[kRowsUsed];
  for (int r = 0; r < kRowsUsed; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256 sum[kRowsUsed];
    for (int r = 0; r < kRowsUsed; ++r) sum[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks_per_group; ++b) {
      const int64_t k0 = (g * blocks_per_group + b) * kInt4Block;
      const __m256 x0 = _mm256_loadu_ps(x + k0), x1 = _mm256_loadu_ps(x + k0 + 8);
      const __m256 x2 = _mm256_loadu_ps(x + k0 + 16), x3 = _mm256_loadu_ps(x + k0 + 24);
      for (int r = 0; r < kRowsUsed; ++r) {
        const __m128i bytes =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.q + (n0 + r) * (a.k / 2) + k0 / 2));
        // (nibble ^ 8) - 8 sign-extends a 4-bit two's complement value.
        const __m128i lo = _mm_sub_epi8(_mm_xor_si128(_mm_and_si128(bytes, low), eight), eight);
        const __m128i hi = _mm_sub_epi8(_mm_xor_si128(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), eight), eight);
        sum[r] = _mm256_fmadd_ps(x0, to_float8(lo), sum[r]);
        sum[r] = _mm256_fmadd_ps(x1, to_float8(_mm_srli_si128(lo, 8)), sum[r]);
        sum[r] = _mm256_fmadd_ps(x2, to_float8(hi), sum[r]);
        sum[r] = _mm256_fmadd_ps(x3, to_float8(_mm_srli_si128(hi, 8)), sum[r]);
      }
    }
    for (int r = 0; r < kRowsUsed; ++r) {
      acc[r] = _mm256_fmadd_ps(sum[r], _mm256_set1_ps(a.scales[(n0 + r) * groups + g]), acc[r]);
    }
  }
  for (int r = 0; r < kRowsUsed; ++r) {
    const float total = Avx2Ops::sum(acc[r]);
    out[r] = a.bias ? total + a.bias[n0 + r] : total;
  }
}

void gemv_avx2(const GemvInt4Args& a, int64_t n_begin, int64_t n_end) {
  for (int64_t m = 0; m < a.m; ++m) {
    const float* x = a.x + m * a.k;
    float* y = a.y + m * a.n;
    int64_t n = n_begin;
    for (; n + 4 <= n_end; n += 4) rows_avx2<4>(a, x, n, y + n);
    for (; n < n_end; ++n) rows_avx2<1>(a, x, n, y + n);
  }
}

}  // namespace

GemvInt4Kernels avx2_gemv_int4_kernels() { return {Isa::kAvx2, &gemv_avx2}; }

}  // namespace torchqat::kernels
