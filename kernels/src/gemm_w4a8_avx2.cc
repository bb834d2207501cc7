// AVX2 W4A8 Linear: int4 weights offset to [0, 15] (nibble ^ 8) times uint8
// activations with vpmaddubsw (exact: pair sums <= 2 * 255 * 15), an int16 add
// of the low- and high-nibble products, vpmaddwd to int32 lanes, and the
// offset's 8 * sum(x) taken back per group. Four output rows share each
// activation load.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "gemm_variants.h"
#include "torchqat/kernels/gemm_w4a8.h"

namespace torchqat::kernels {
namespace {

constexpr int64_t kPairK = 2 * kInt4Block;  // k per 32 packed bytes (two blocks)

// One activation row laid out as the nibbles are: per block pair, the bytes
// that meet the low nibbles (k 0-15 of both blocks), then the high ones
// (k 16-31), zero-padded to whole pairs; and per pair 8 * x summed into the
// int32 lanes the products land in.
struct PreparedRow {
  std::vector<uint8_t> x;      // [pairs][2][32]
  std::vector<std::array<int32_t, 8>> eight;  // [pairs]

  void prepare(const uint8_t* src, int64_t k) {
    const int64_t pairs = (k + kPairK - 1) / kPairK;
    x.assign(size_t(pairs * kPairK), 0);
    eight.resize(size_t(pairs));
    for (int64_t b = 0; b < k / kInt4Block; ++b) {
      uint8_t* dst = x.data() + (b / 2) * kPairK + (b % 2) * 16;
      std::memcpy(dst, src + b * kInt4Block, 16);            // meets the low nibbles
      std::memcpy(dst + 32, src + b * kInt4Block + 16, 16);  // meets the high nibbles
    }
    const __m256i e = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    for (int64_t p = 0; p < pairs; ++p) {
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.data() + p * kPairK));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.data() + p * kPairK + 32));
      const __m256i sums = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, e), _mm256_maddubs_epi16(hi, e)),
                                           ones);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(eight[size_t(p)].data()), sums);
    }
  }
};

inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

template <int kRowsUsed>
void rows_avx2(const GemmW4A8Args& a, const PreparedRow& xr, int64_t n0, float* out) {
  const int64_t groups = a.k / a.group_size, blocks = a.k / kInt4Block, pairs = (blocks + 1) / 2;
  const __m256i low = _mm256_set1_epi8(0x0f), flip = _mm256_set1_epi8(int8_t(0x88)), ones = _mm256_set1_epi16(1);
  __m256 acc[kRowsUsed];
  for (int r = 0; r < kRowsUsed; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    const bool whole = 2 * p + 1 < blocks;  // else the last block is alone (its partner's activations are 0)
    const __m256i xlo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr.x.data() + p * kPairK));
    const __m256i xhi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr.x.data() + p * kPairK + 32));
    const __m256i eight = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr.eight[size_t(p)].data()));
    const int64_t g0 = 2 * p * kInt4Block / a.group_size, g1 = whole ? (2 * p + 1) * kInt4Block / a.group_size : g0;
    for (int r = 0; r < kRowsUsed; ++r) {
      const uint8_t* w = a.q + (n0 + r) * (a.k / 2) + p * 32;
      __m256i bytes = whole ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))
                            : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
      bytes = _mm256_xor_si256(bytes, flip);  // two's complement nibble -> nibble + 8 in [0, 15]
      const __m256i lo = _mm256_and_si256(bytes, low);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low);
      const __m256i prod = _mm256_add_epi16(_mm256_maddubs_epi16(xlo, lo), _mm256_maddubs_epi16(xhi, hi));
      const __m256i sums = _mm256_sub_epi32(_mm256_madd_epi16(prod, ones), eight);  // lanes 0-3: block 2p, 4-7: 2p + 1
      const float* s = a.scales + (n0 + r) * groups;
      const __m256 scale = _mm256_set_m128(_mm_broadcast_ss(s + g1), _mm_broadcast_ss(s + g0));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc[r]);
    }
  }
  for (int r = 0; r < kRowsUsed; ++r) {
    const int64_t n = n0 + r;
    float total = hsum(acc[r]);
    if (a.x_zero != 0) total -= float(a.x_zero) * a.weight_sums[n];
    const float y = total * a.x_scale;
    out[r] = a.bias ? y + a.bias[n] : y;
  }
}

// Columns [n_begin, n_end) for every row, four columns at a time over all
// rows, so that the four weight rows stay in L1 while the rows pass.
void gemm_avx2(const GemmW4A8Args& a, int64_t n_begin, int64_t n_end) {
  std::vector<PreparedRow> rows(size_t(a.m));
  for (int64_t m = 0; m < a.m; ++m) rows[size_t(m)].prepare(a.x + m * a.k, a.k);
  int64_t n = n_begin;
  for (; n + 4 <= n_end; n += 4) {
    for (int64_t m = 0; m < a.m; ++m) rows_avx2<4>(a, rows[size_t(m)], n, a.y + m * a.n + n);
  }
  for (; n < n_end; ++n) {
    for (int64_t m = 0; m < a.m; ++m) rows_avx2<1>(a, rows[size_t(m)], n, a.y + m * a.n + n);
  }
}

}  // namespace

GemmW4A8Kernels avx2_gemm_w4a8_kernels() { return {Isa::kAvx2, &gemm_avx2}; }

}  // namespace torchqat::kernels
