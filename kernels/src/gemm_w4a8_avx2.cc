// AVX2 W4A8 Linear: int4 weights offset to [0, 15] (nibble ^ 8) times uint8
// activations with vpmaddubsw (exact: pair sums <= 2 * 255 * 15), an int16 add
// of the low- and high-nibble products, vpmaddwd to int32 lanes, and the
// offset's 8 * sum(x) taken back per group. Four output rows share each
// activation load. From kW4A8PanelRows rows: unpacked panels (w4a8_panels.h)
// and vpmaddubsw outer products of each row's broadcast quad with 8 columns'
// int8 weights (pair sums <= 2 * 255 * 8; eight quads' sums still fit int16).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "avx2_ops.h"
#include "gemm_variants.h"
#include "torchqat/kernels/gemm_w4a8.h"
#include "w4a8_panels.h"

namespace torchqat::kernels {
namespace {

constexpr int64_t kPairK = 2 * kInt4Block;  // k per 32 packed bytes (two blocks)
// The weights are read once, from memory, in one stream: a software prefetch
// this far ahead (about the next four rows at K = 4096) doubled the batch-1
// throughput on the development VM, where the hardware prefetcher alone
// left it at 8 GB/s.
constexpr int64_t kPrefetchBytes = 8192;

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

  // Pair p's activations for the low and the high nibbles, and its 8 * x sums.
  __m256i low(int64_t p) const { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.data() + p * kPairK)); }
  __m256i high(int64_t p) const {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.data() + p * kPairK + 32));
  }
  __m256i eights(int64_t p) const {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(eight[size_t(p)].data()));
  }
};

// The exact int32 sums of one block pair as floats: lanes 0-3 hold block 2p's
// (partial sums of its group), lanes 4-7 block 2p + 1's.
inline __m256 pair_sums(__m256i bytes, __m256i xlo, __m256i xhi, __m256i eight) {
  const __m256i low = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  bytes = _mm256_xor_si256(bytes, _mm256_set1_epi8(int8_t(0x88)));  // two's complement nibble -> nibble + 8
  const __m256i lo = _mm256_and_si256(bytes, low);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low);
  const __m256i prod = _mm256_add_epi16(_mm256_maddubs_epi16(xlo, lo), _mm256_maddubs_epi16(xhi, hi));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(prod, ones), eight));
}

// What the column loop reads besides the weights: the group of every block.
struct Geometry {
  int64_t groups, blocks;
  std::vector<int32_t> block_group;  // [blocks]
  explicit Geometry(const GemmW4A8Args& a) : groups(a.k / a.group_size), blocks(a.k / kInt4Block) {
    for (int64_t b = 0; b < blocks; ++b) block_group.push_back(int32_t(b * kInt4Block / a.group_size));
  }
};

// Output columns n0 .. n0 + kRowsUsed - 1 of one activation row.
// kPairInOneGroup: group_size is a multiple of 64, so both blocks of a pair
// share a scale.
template <int kRowsUsed, bool kPairInOneGroup>
void columns_avx2(const GemmW4A8Args& a, const Geometry& geo, const PreparedRow& xr, int64_t n0, float* out) {
  const uint8_t* w[kRowsUsed];
  const float* s[kRowsUsed];
  __m256 acc[kRowsUsed];
  for (int r = 0; r < kRowsUsed; ++r) {
    w[r] = a.q + (n0 + r) * (a.k / 2);
    s[r] = a.scales + (n0 + r) * geo.groups;
    acc[r] = _mm256_setzero_ps();
  }
  const int32_t* bg = geo.block_group.data();
  const int64_t whole_pairs = geo.blocks / 2;
  for (int64_t p = 0; p < whole_pairs; ++p) {
    const __m256i xlo = xr.low(p), xhi = xr.high(p), eight = xr.eights(p);
    const int32_t g0 = bg[2 * p], g1 = bg[2 * p + 1];
    for (int r = 0; r < kRowsUsed; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + p * 32 + kPrefetchBytes), _MM_HINT_T0);
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r] + p * 32));
      const __m256 scale = kPairInOneGroup ? _mm256_broadcast_ss(s[r] + g0)
                                           : _mm256_set_m128(_mm_broadcast_ss(s[r] + g1), _mm_broadcast_ss(s[r] + g0));
      acc[r] = _mm256_fmadd_ps(pair_sums(bytes, xlo, xhi, eight), scale, acc[r]);
    }
  }
  if (geo.blocks % 2) {  // the last block alone: its partner's activations are zero
    const int64_t p = whole_pairs;
    const __m256i xlo = xr.low(p), xhi = xr.high(p), eight = xr.eights(p);
    for (int r = 0; r < kRowsUsed; ++r) {
      const __m256i bytes = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r] + p * 32)));
      acc[r] = _mm256_fmadd_ps(pair_sums(bytes, xlo, xhi, eight), _mm256_broadcast_ss(s[r] + bg[2 * p]), acc[r]);
    }
  }
  for (int r = 0; r < kRowsUsed; ++r) {
    const int64_t n = n0 + r;
    float total = Avx2Ops::sum(acc[r]);
    if (a.x_zero != 0) total -= float(a.x_zero) * a.weight_sums[n];
    const float y = total * a.x_scale;
    out[r] = a.bias ? y + a.bias[n] : y;
  }
}

template <bool kPairInOneGroup>
void columns(const GemmW4A8Args& a, const std::vector<PreparedRow>& rows, int64_t n_begin, int64_t n_end) {
  const Geometry geo(a);
  int64_t n = n_begin;
  for (; n + 4 <= n_end; n += 4) {  // four weight rows stay in L1 while the activation rows pass
    for (int64_t m = 0; m < a.m; ++m) columns_avx2<4, kPairInOneGroup>(a, geo, rows[size_t(m)], n, a.y + m * a.n + n);
  }
  for (; n < n_end; ++n) {
    for (int64_t m = 0; m < a.m; ++m) columns_avx2<1, kPairInOneGroup>(a, geo, rows[size_t(m)], n, a.y + m * a.n + n);
  }
}

// Quads summed in int16 before widening: 8 * 2 * 255 * 8 = 32640 < 2^15.
constexpr int64_t kQuadsInInt16 = 8;

// Rows m0 .. m0 + kRows - 1 of columns half * 8 .. half * 8 + 7 of one
// panel: per group, int32 sums of the uint8 x int8 products, then scaled by
// the group's scales into float accumulators.
template <int kRows>
void panel_rows(const GemmW4A8Args& a, const W4A8Panel& p, int64_t m0, int64_t n0, int half) {
  const int64_t quads_per_group = a.group_size / 4, groups = a.k / a.group_size;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[kRows];
  for (int r = 0; r < kRows; ++r) acc[r] = _mm256_setzero_ps();
  const uint8_t* x = a.x + m0 * a.k;
  const int32_t* quads = p.quads.data() + half * 8;
  for (int64_t g = 0; g < groups; ++g) {
    __m256i sums[kRows];
    for (int r = 0; r < kRows; ++r) sums[r] = _mm256_setzero_si256();
    for (int64_t j0 = g * quads_per_group; j0 < (g + 1) * quads_per_group; j0 += kQuadsInInt16) {
      __m256i pairs[kRows];
      for (int r = 0; r < kRows; ++r) pairs[r] = _mm256_setzero_si256();
      for (int64_t j = j0; j < j0 + kQuadsInInt16; ++j) {  // group sizes are multiples of 32: whole runs of 8
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quads + j * kW4A8Panel));
        for (int r = 0; r < kRows; ++r) {
          const __m256i xq = _mm256_set1_epi32(quad_at(x + r * a.k, 4 * j));
          pairs[r] = _mm256_add_epi16(pairs[r], _mm256_maddubs_epi16(xq, w));
        }
      }
      for (int r = 0; r < kRows; ++r) sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(pairs[r], ones));
    }
    const __m256 scale = _mm256_loadu_ps(p.scales.data() + g * kW4A8Panel + half * 8);
    for (int r = 0; r < kRows; ++r) acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), scale, acc[r]);
  }
  const int cols = std::min(8, p.cols - half * 8);
  const int64_t n = n0 + half * 8;
  alignas(32) float zero_sums[8] = {}, bias[8] = {}, y[8];
  for (int c = 0; c < cols; ++c) {
    zero_sums[c] = a.x_zero != 0 ? float(a.x_zero) * a.weight_sums[n + c] : 0.0f;
    bias[c] = a.bias ? a.bias[n + c] : 0.0f;
  }
  const __m256 zs = _mm256_load_ps(zero_sums), b = _mm256_load_ps(bias), x_scale = _mm256_set1_ps(a.x_scale);
  for (int r = 0; r < kRows; ++r) {
    float* out = a.y + (m0 + r) * a.n + n;
    const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(acc[r], zs), x_scale), b);
    if (cols == 8) {
      _mm256_storeu_ps(out, v);
    } else {
      _mm256_store_ps(y, v);
      std::memcpy(out, y, sizeof(float) * size_t(cols));
    }
  }
}

void gemm_panels(const GemmW4A8Args& a, int64_t n_begin, int64_t n_end) {
  W4A8Panel p;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kW4A8Panel) {
    p.unpack(a, n0, int(std::min<int64_t>(kW4A8Panel, n_end - n0)));
    for (int half = 0; half * 8 < p.cols; ++half) {
      int64_t m = 0;
      for (; m + 4 <= a.m; m += 4) panel_rows<4>(a, p, m, n0, half);
      for (; m < a.m; ++m) panel_rows<1>(a, p, m, n0, half);
    }
  }
}

void gemm_avx2(const GemmW4A8Args& a, int64_t n_begin, int64_t n_end) {
  if (a.m >= kW4A8PanelRows) return gemm_panels(a, n_begin, n_end);
  std::vector<PreparedRow> rows(size_t(a.m));
  for (int64_t m = 0; m < a.m; ++m) rows[size_t(m)].prepare(a.x + m * a.k, a.k);
  if (a.group_size % kPairK == 0) {
    columns<true>(a, rows, n_begin, n_end);
  } else {
    columns<false>(a, rows, n_begin, n_end);
  }
}

}  // namespace

GemmW4A8Kernels avx2_gemm_w4a8_kernels() { return {Isa::kAvx2, &gemm_avx2}; }

}  // namespace torchqat::kernels
