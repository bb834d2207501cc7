// AVX-512 VNNI W4A8 Linear: the AVX2 kernel's scheme (gemm_w4a8_avx2.cc) on
// 64-byte lines of four int4 blocks (128 k), with vpdpbusd summing the uint8 x
// (nibble + 8) products straight into int32 lanes where AVX2 needs vpmaddubsw,
// an int16 add and vpmaddwd. Lanes 4b .. 4b + 3 hold block b's partial sums;
// each lane is scaled by its block's group scale before the float sum. Group
// sizes 32, 64 and multiples of 128 (a fixed lane -> group pattern); others
// run the AVX2 kernel. From kW4A8PanelRows rows: unpacked panels
// (w4a8_panels.h) and vpdpbusd outer products, eight rows by 16 columns.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm_variants.h"
#include "torchqat/kernels/gemm_w4a8.h"
#include "w4a8_panels.h"

namespace torchqat::kernels {
namespace {

constexpr int64_t kLineK = 4 * kInt4Block;  // k per 64 packed bytes (four blocks)
constexpr int64_t kPrefetchBytes = 8192;    // as the AVX2 kernel: one weight stream read once

// One activation row as the nibbles of a line meet it: the bytes that meet
// the low nibbles (k 0-15 of each block), then the high ones (k 16-31),
// zero-padded to whole lines; and per line 8 * x summed into each lane.
struct PreparedRow {
  std::vector<uint8_t> x;       // [lines][2][64]
  std::vector<int32_t> eight;   // [lines][16]

  void prepare(const uint8_t* src, int64_t k) {
    const int64_t lines = (k + kLineK - 1) / kLineK;
    x.assign(size_t(lines * 2 * 64), 0);
    eight.resize(size_t(lines * 16));
    for (int64_t b = 0; b < k / kInt4Block; ++b) {
      uint8_t* dst = x.data() + (b / 4) * 128 + (b % 4) * 16;
      std::memcpy(dst, src + b * kInt4Block, 16);
      std::memcpy(dst + 64, src + b * kInt4Block + 16, 16);
    }
    const __m512i e = _mm512_set1_epi8(8);
    for (int64_t l = 0; l < lines; ++l) {
      const __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), low(l), e), high(l), e);
      _mm512_storeu_si512(eight.data() + l * 16, sums);
    }
  }

  __m512i low(int64_t l) const { return _mm512_loadu_si512(x.data() + l * 128); }
  __m512i high(int64_t l) const { return _mm512_loadu_si512(x.data() + l * 128 + 64); }
  __m512i eights(int64_t l) const { return _mm512_loadu_si512(eight.data() + l * 16); }
};

// The exact int32 sums of one line as floats, lane 4b + i holding a partial
// sum of block b.
inline __m512 line_sums(__m512i bytes, __m512i xlo, __m512i xhi, __m512i eight) {
  const __m512i low = _mm512_set1_epi8(0x0f);
  bytes = _mm512_xor_si512(bytes, _mm512_set1_epi8(int8_t(0x88)));  // two's complement nibble -> nibble + 8
  const __m512i lo = _mm512_and_si512(bytes, low);
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low);
  const __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), xlo, lo), xhi, hi);
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(sums, eight));
}

// The scales of a line's lanes: the groups a line touches are consecutive
// from its first block's g0 (four with groups of 32, two with 64, one with a
// multiple of 128), loaded together and spread to the lanes by one permute.
struct LaneGroups {
  __m512i offset;         // per lane: its group - g0
  int64_t per_line = 0;   // groups one line touches
  bool supported = false;
  explicit LaneGroups(int64_t group_size) {
    const int64_t blocks_per_group = group_size / kInt4Block;
    supported = blocks_per_group == 1 || blocks_per_group == 2 || blocks_per_group % 4 == 0;
    per_line = blocks_per_group < 4 ? 4 / blocks_per_group : 1;
    alignas(64) int32_t lanes[16];
    for (int i = 0; i < 16; ++i) lanes[i] = int32_t(per_line > 1 ? (i / 4) / blocks_per_group : 0);
    offset = _mm512_load_si512(lanes);
  }
};

// Output columns n0 .. n0 + kRowsUsed - 1 of one activation row.
template <int kRowsUsed>
void columns_vnni(const GemmW4A8Args& a, const LaneGroups& lg, const PreparedRow& xr, int64_t n0, float* out) {
  const int64_t groups = a.k / a.group_size, blocks = a.k / kInt4Block;
  const int64_t blocks_per_group = a.group_size / kInt4Block;
  const uint8_t* w[kRowsUsed];
  const float* s[kRowsUsed];
  __m512 acc[kRowsUsed];
  for (int r = 0; r < kRowsUsed; ++r) {
    w[r] = a.q + (n0 + r) * (a.k / 2);
    s[r] = a.scales + (n0 + r) * groups;
    acc[r] = _mm512_setzero_ps();
  }
  const int64_t lines = (blocks + 3) / 4;
  for (int64_t l = 0; l < lines; ++l) {
    const __m512i xlo = xr.low(l), xhi = xr.high(l), eight = xr.eights(l);
    const int64_t g0 = (4 * l) / blocks_per_group;
    const int64_t tail_blocks = blocks - 4 * l;  // the last line may hold fewer than four
    const __mmask64 bytes_mask = tail_blocks >= 4 ? ~__mmask64{0} : (__mmask64{1} << (16 * tail_blocks)) - 1;
    // The last line's groups only: nothing past the row's last scale is read.
    const int64_t line_groups = std::min<int64_t>(lg.per_line, groups - g0);
    const __mmask16 groups_mask = __mmask16((1u << line_groups) - 1);
    for (int r = 0; r < kRowsUsed; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + l * 64 + kPrefetchBytes), _MM_HINT_T0);
      const __m512i bytes = _mm512_maskz_loadu_epi8(bytes_mask, w[r] + l * 64);
      const __m512 scale = lg.per_line == 1
                               ? _mm512_set1_ps(s[r][g0])
                               : _mm512_permutexvar_ps(lg.offset, _mm512_maskz_loadu_ps(groups_mask, s[r] + g0));
      acc[r] = _mm512_fmadd_ps(line_sums(bytes, xlo, xhi, eight), scale, acc[r]);
    }
  }
  for (int r = 0; r < kRowsUsed; ++r) {
    const int64_t n = n0 + r;
    float total = _mm512_reduce_add_ps(acc[r]);
    if (a.x_zero != 0) total -= float(a.x_zero) * a.weight_sums[n];
    const float y = total * a.x_scale;
    out[r] = a.bias ? y + a.bias[n] : y;
  }
}

// Rows m0 .. m0 + kRows - 1 of one panel: per group, int32 sums of the
// uint8 x int8 products (each row's quad broadcast against the 16 columns'),
// then scaled by the group's 16 scales into float accumulators.
template <int kRows>
void panel_rows(const GemmW4A8Args& a, const W4A8Panel& p, int64_t m0, int64_t n0) {
  const int64_t quads_per_group = a.group_size / 4, groups = a.k / a.group_size;
  __m512 acc[kRows];
  for (int r = 0; r < kRows; ++r) acc[r] = _mm512_setzero_ps();
  const uint8_t* x = a.x + m0 * a.k;
  for (int64_t g = 0; g < groups; ++g) {
    __m512i sums[kRows];
    for (int r = 0; r < kRows; ++r) sums[r] = _mm512_setzero_si512();
    for (int64_t j = g * quads_per_group; j < (g + 1) * quads_per_group; ++j) {
      const __m512i w = _mm512_loadu_si512(p.quads.data() + j * kW4A8Panel);
      for (int r = 0; r < kRows; ++r) {
        sums[r] = _mm512_dpbusd_epi32(sums[r], _mm512_set1_epi32(quad_at(x + r * a.k, 4 * j)), w);
      }
    }
    const __m512 scale = _mm512_loadu_ps(p.scales.data() + g * kW4A8Panel);
    for (int r = 0; r < kRows; ++r) acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r]), scale, acc[r]);
  }
  const __mmask16 cols = __mmask16((1u << p.cols) - 1);
  const __m512 zero_sums = a.x_zero != 0 ? _mm512_mul_ps(_mm512_set1_ps(float(a.x_zero)),
                                                         _mm512_maskz_loadu_ps(cols, a.weight_sums + n0))
                                         : _mm512_setzero_ps();
  const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(cols, a.bias + n0) : _mm512_setzero_ps();
  const __m512 x_scale = _mm512_set1_ps(a.x_scale);
  for (int r = 0; r < kRows; ++r) {
    const __m512 y = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(acc[r], zero_sums), x_scale), bias);
    _mm512_mask_storeu_ps(a.y + (m0 + r) * a.n + n0, cols, y);
  }
}

void gemm_panels(const GemmW4A8Args& a, int64_t n_begin, int64_t n_end) {
  W4A8Panel p;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kW4A8Panel) {
    p.unpack(a, n0, int(std::min<int64_t>(kW4A8Panel, n_end - n0)));
    int64_t m = 0;
    for (; m + 8 <= a.m; m += 8) panel_rows<8>(a, p, m, n0);
    for (; m + 2 <= a.m; m += 2) panel_rows<2>(a, p, m, n0);
    for (; m < a.m; ++m) panel_rows<1>(a, p, m, n0);
  }
}

void gemm_vnni(const GemmW4A8Args& a, int64_t n_begin, int64_t n_end) {
  if (a.m >= kW4A8PanelRows) return gemm_panels(a, n_begin, n_end);
  const LaneGroups lg(a.group_size);
  if (!lg.supported) return avx2_gemm_w4a8_kernels().gemm(a, n_begin, n_end);
  std::vector<PreparedRow> rows(size_t(a.m));
  for (int64_t m = 0; m < a.m; ++m) rows[size_t(m)].prepare(a.x + m * a.k, a.k);
  int64_t n = n_begin;
  for (; n + 4 <= n_end; n += 4) {  // four weight rows stay in L1 while the activation rows pass
    for (int64_t m = 0; m < a.m; ++m) columns_vnni<4>(a, lg, rows[size_t(m)], n, a.y + m * a.n + n);
  }
  for (; n < n_end; ++n) {
    for (int64_t m = 0; m < a.m; ++m) columns_vnni<1>(a, lg, rows[size_t(m)], n, a.y + m * a.n + n);
  }
}

}  // namespace

GemmW4A8Kernels avx512vnni_gemm_w4a8_kernels() { return {Isa::kAvx512, &gemm_vnni}; }

}  // namespace torchqat::kernels
