// The W4A8 kernels' path for many activation rows: the int4 weights of 16
// output columns (a panel) unpacked once to int8 in the layout an outer
// product wants (per 4-k quad, the 16 columns' 4 bytes side by side), their
// group scales transposed to [group][16], then every row block multiplies
// the unpacked panel (gemm_w4a8_avx2.cc, gemm_w4a8_avx512vnni.cc). The
// per-row path unpacks the nibbles again for every row; here that cost is
// paid once per panel, which is what batch > 1 and convolutions need.
// Included by the variant TUs only (SSE2 code; internal linkage per TU).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "torchqat/kernels/gemm_w4a8.h"

namespace torchqat::kernels {
namespace {

constexpr int kW4A8Panel = 16;  // output columns per panel
// Rows from which the panel path pays off (below: the per-row path, which
// streams each weight row once).
constexpr int64_t kW4A8PanelRows = 8;

struct W4A8Panel {
  std::vector<int32_t> quads;  // [k / 4][16]: column c's weights k 4j .. 4j + 3 as int8 in quads[j * 16 + c]
  std::vector<float> scales;   // [groups][16]; zero past the last column (whose weights are zero)
  int cols = 0;

  // Columns n0 .. n0 + cols - 1 (cols <= 16) of the packed weights.
  void unpack(const GemmW4A8Args& a, int64_t n0, int n_cols) {
    cols = n_cols;
    const int64_t quads_per_row = a.k / 4, blocks = a.k / kInt4Block, groups = a.k / a.group_size;
    quads.resize(size_t(quads_per_row * kW4A8Panel));
    scales.assign(size_t(groups * kW4A8Panel), 0.0f);
    const uint8_t* src[kW4A8Panel];
    for (int c = 0; c < kW4A8Panel; ++c) src[c] = c < cols ? a.q + (n0 + c) * (a.k / 2) : nullptr;
    for (int64_t b = 0; b < blocks; ++b) {
      // Four columns at a time: each block's 32 k as eight quads in two
      // vectors, then 4x4 transposes put each quad's four columns side by side.
      for (int c0 = 0; c0 < kW4A8Panel; c0 += 4) {
        __m128 lo[4], hi[4];
        for (int i = 0; i < 4; ++i) {
          const __m128i bytes =
              src[c0 + i] ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src[c0 + i] + b * 16)) : _mm_set1_epi8(0);
          const auto [l, h] = unpack_block(bytes);
          lo[i] = _mm_castsi128_ps(l);
          hi[i] = _mm_castsi128_ps(h);
        }
        _MM_TRANSPOSE4_PS(lo[0], lo[1], lo[2], lo[3]);
        _MM_TRANSPOSE4_PS(hi[0], hi[1], hi[2], hi[3]);
        int32_t* dst = quads.data() + (8 * b) * kW4A8Panel + c0;
        for (int j = 0; j < 4; ++j) {
          _mm_storeu_ps(reinterpret_cast<float*>(dst + j * kW4A8Panel), lo[j]);
          _mm_storeu_ps(reinterpret_cast<float*>(dst + (4 + j) * kW4A8Panel), hi[j]);
        }
      }
    }
    for (int c = 0; c < cols; ++c) {
      for (int64_t g = 0; g < groups; ++g) scales[size_t(g * kW4A8Panel + c)] = a.scales[(n0 + c) * groups + g];
    }
  }

 private:
  // A block's 16 bytes (byte j: k = j in the low nibble, k = j + 16 in the
  // high one) as 32 int8 in k order, in two vectors; nibble ^ 8 - 8
  // sign-extends the two's complement nibble (a zero byte, what columns past
  // the panel's last get, gives zeros).
  static std::pair<__m128i, __m128i> unpack_block(__m128i bytes) {
    const __m128i low = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    bytes = _mm_xor_si128(bytes, _mm_set1_epi8(int8_t(0x88)));
    return {_mm_sub_epi8(_mm_and_si128(bytes, low), eight),
            _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), eight)};
  }
};

// Activation bytes k .. k + 3 of a row as one int32 (for a broadcast).
inline int32_t quad_at(const uint8_t* row, int64_t k) {
  int32_t v;
  std::memcpy(&v, row + k, 4);
  return v;
}

}  // namespace
}  // namespace torchqat::kernels
