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
  std::vector<float> scales;   // [groups][16]; zero past the last column
  int cols = 0;

  // Columns n0 .. n0 + cols - 1 (cols <= 16) of the packed weights.
  void unpack(const GemmW4A8Args& a, int64_t n0, int n_cols) {
    cols = n_cols;
    const int64_t quads_per_row = a.k / 4, blocks = a.k / kInt4Block, groups = a.k / a.group_size;
    quads.assign(size_t(quads_per_row * kW4A8Panel), 0);
    scales.assign(size_t(groups * kW4A8Panel), 0.0f);
    const __m128i low = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8), flip = _mm_set1_epi8(int8_t(0x88));
    for (int c = 0; c < cols; ++c) {
      const uint8_t* src = a.q + (n0 + c) * (a.k / 2);
      for (int64_t b = 0; b < blocks; ++b) {
        // Byte j of a block holds k = j (low nibble) and k = j + 16 (high):
        // nibble ^ 8 - 8 sign-extends the two's complement nibble.
        const __m128i bytes = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + b * 16)), flip);
        alignas(16) int32_t k_order[8];  // quads 8b .. 8b + 7
        _mm_store_si128(reinterpret_cast<__m128i*>(k_order), _mm_sub_epi8(_mm_and_si128(bytes, low), eight));
        _mm_store_si128(reinterpret_cast<__m128i*>(k_order + 4),
                        _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), eight));
        for (int j = 0; j < 8; ++j) quads[size_t((8 * b + j) * kW4A8Panel + c)] = k_order[j];
      }
      for (int64_t g = 0; g < groups; ++g) scales[size_t(g * kW4A8Panel + c)] = a.scales[(n0 + c) * groups + g];
    }
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
