// AVX-512 VNNI INT8 GEMM: vpdpbusd multiplies uint8 activations by int8
// weights four at a time and adds the products to int32 lanes exactly (no
// int16 intermediate to saturate), 64 multiply-adds per instruction against
// the AVX2 path's 16. It reads the packed layout of gemm_int8.h unchanged:
// two consecutive k pairs of a 16-column panel are one 64-byte line,
// [pair j: 16 x 2][pair j + 1: 16 x 2], which one vpermw turns into the
// 16 x 4 quads vpdpbusd takes. Microkernel: 8 rows x 2 panels (32 columns),
// 16 accumulators.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm_variants.h"
#include "torchqat/kernels/gemm_int8.h"

namespace torchqat::kernels {
namespace {

constexpr int64_t kRows = 8;          // rows per microkernel
constexpr int64_t kPanels = 2;        // panels per microkernel
constexpr int64_t kBlockRows = 64;    // rows copied (K padded to a quad) together
constexpr int64_t kPairBytes = kPanel * 2;
constexpr int64_t kPrefetchBytes = 4096;  // as the AVX2 path: lines in flight for streamed panels

// dword c of the result = (word c, word 16 + c) of a line: the four weights
// b[c, 4q .. 4q + 3].
__m512i quad_index() {
  alignas(64) int16_t index[32];
  for (int c = 0; c < 16; ++c) {
    index[2 * c] = int16_t(c);
    index[2 * c + 1] = int16_t(16 + c);
  }
  return _mm512_load_si512(index);
}

// The weights of quad q of a panel; the last quad of an odd number of pairs
// holds one pair (its other half zero, not read).
inline __m512i load_quad(const int8_t* panel, int64_t q, bool half, __m512i index) {
  const int8_t* at = panel + q * 2 * kPairBytes;
  _mm_prefetch(reinterpret_cast<const char*>(at + kPrefetchBytes), _MM_HINT_T0);
  const __m512i line = half ? _mm512_maskz_loadu_epi8(0xffffffffull, at) : _mm512_loadu_si512(at);
  return _mm512_permutexvar_epi16(index, line);
}

// acc[r][p * 16 + c] for rows r < kR and panels p < kP over every quad; a
// holds the rows as uint8 quads (row stride `stride`, K zero-padded).
template <int kR, int kP>
void microkernel(const uint8_t* a, int64_t stride, int64_t k_pairs, const int8_t* panel, int64_t panel_bytes,
                 int32_t* acc /*[kRows][kPanels * 16]*/) {
  const __m512i index = quad_index();
  __m512i c[kR][kP];
  for (int r = 0; r < kR; ++r) {
    for (int p = 0; p < kP; ++p) c[r][p] = _mm512_setzero_si512();
  }
  const int64_t full = k_pairs / 2, quads = (k_pairs + 1) / 2;
  for (int64_t q = 0; q < quads; ++q) {
    __m512i b[kP];
    for (int p = 0; p < kP; ++p) b[p] = load_quad(panel + p * panel_bytes, q, q == full, index);
    for (int r = 0; r < kR; ++r) {
      int32_t four;
      std::memcpy(&four, a + r * stride + q * 4, 4);
      const __m512i x = _mm512_set1_epi32(four);
      for (int p = 0; p < kP; ++p) c[r][p] = _mm512_dpbusd_epi32(c[r][p], x, b[p]);
    }
  }
  for (int r = 0; r < kR; ++r) {
    for (int p = 0; p < kP; ++p) _mm512_storeu_si512(acc + r * kPanels * 16 + p * 16, c[r][p]);
  }
}

template <int kR>
void run_rows(int64_t panels, const uint8_t* a, int64_t stride, int64_t k_pairs, const int8_t* panel,
              int64_t panel_bytes, int32_t* acc) {
  if (panels == 2) {
    microkernel<kR, 2>(a, stride, k_pairs, panel, panel_bytes, acc);
  } else {
    microkernel<kR, 1>(a, stride, k_pairs, panel, panel_bytes, acc);
  }
}

void run_microkernel(int64_t rows, int64_t panels, const uint8_t* a, int64_t stride, int64_t k_pairs,
                     const int8_t* panel, int64_t panel_bytes, int32_t* acc) {
  switch (rows) {
    case 8: run_rows<8>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
    case 7: run_rows<7>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
    case 6: run_rows<6>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
    case 5: run_rows<5>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
    case 4: run_rows<4>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
    case 3: run_rows<3>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
    case 2: run_rows<2>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
    default: run_rows<1>(panels, a, stride, k_pairs, panel, panel_bytes, acc); break;
  }
}

// What the epilogue needs of up to 16 consecutive columns (masked loads:
// nothing past the last column is read).
struct Columns16 {
  __mmask16 mask;
  __m512i zero_term;  // a_zero * col_sums
  __m512 multiplier, bias;
  Columns16(const GemmInt8Args& args, int64_t n, int64_t valid)
      : mask(__mmask16((1u << valid) - 1)),
        zero_term(_mm512_mullo_epi32(_mm512_maskz_loadu_epi32(mask, args.b.col_sums + n),
                                     _mm512_set1_epi32(args.a_zero))),
        multiplier(args.multiplier ? _mm512_maskz_loadu_ps(mask, args.multiplier + n) : _mm512_setzero_ps()),
        bias(args.bias ? _mm512_maskz_loadu_ps(mask, args.bias + n) : _mm512_setzero_ps()) {}
};

// gemm_epilogue for 16 columns, the same float operations in the same order.
void epilogue16(const GemmInt8Args& args, const Columns16& cols, int64_t m, int64_t n, __m512i acc) {
  acc = _mm512_sub_epi32(acc, cols.zero_term);
  const int64_t at = m * args.ldc + n;
  if (args.output == GemmOutput::kInt32) {
    _mm512_mask_storeu_epi32(static_cast<int32_t*>(args.out) + at, cols.mask, acc);
    return;
  }
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), cols.multiplier);
  if (args.bias) v = _mm512_add_ps(v, cols.bias);
  if (args.output == GemmOutput::kFloat) {
    if (args.relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(static_cast<float*>(args.out) + at, cols.mask, v);
    return;
  }
  __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(args.inv_out_scale)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm512_add_ps(q, _mm512_set1_ps(float(args.out_zero)));
  const float lo = args.relu ? float(args.out_zero) : 0.0f;
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(lo)), _mm512_set1_ps(255.0f));
  // Exact: q is a whole number in [0, 255].
  _mm512_mask_cvtusepi32_storeu_epi8(static_cast<uint8_t*>(args.out) + at, cols.mask, _mm512_cvtps_epi32(q));
}

void finish_rows(const GemmInt8Args& args, const int32_t* acc, int64_t m0, int64_t rows, int64_t p0,
                 int64_t panels) {
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t n = (p0 + p) * kPanel;
    const Columns16 cols(args, n, std::min(kPanel, args.b.n - n));
    for (int64_t r = 0; r < rows; ++r) {
      epilogue16(args, cols, m0 + r, n, _mm512_loadu_si512(acc + r * kPanels * 16 + p * 16));
    }
  }
}

void gemm_vnni(const GemmInt8Args& args, int64_t m_begin, int64_t m_end, int64_t p_begin, int64_t p_end) {
  const PackedInt8View& b = args.b;
  const int64_t k_pairs = b.k_pairs(), stride = quad_stride(k_pairs);
  const int64_t panel_bytes = k_pairs * kPairBytes;
  const int64_t max_block = std::min(kBlockRows, m_end - m_begin);
  std::vector<uint8_t> a_quads(size_t(max_block * stride));  // rows padded with zeros to whole quads
  alignas(64) int32_t acc[kRows * kPanels * 16];
  for (int64_t mb = m_begin; mb < m_end; mb += kBlockRows) {
    const int64_t block = std::min(kBlockRows, m_end - mb);
    copy_rows_as_quads(args, mb, block, stride, a_quads.data());
    for (int64_t p = p_begin; p < p_end; p += kPanels) {
      const int64_t panels = std::min(kPanels, p_end - p);
      const int8_t* panel = b.data + p * panel_bytes;
      for (int64_t r0 = 0; r0 < block; r0 += kRows) {
        const int64_t rows = std::min(kRows, block - r0);
        run_microkernel(rows, panels, a_quads.data() + r0 * stride, stride, k_pairs, panel, panel_bytes, acc);
        finish_rows(args, acc, mb + r0, rows, p, panels);
      }
    }
  }
}

}  // namespace

GemmInt8Kernels avx512vnni_gemm_int8_kernels() { return {Isa::kAvx512, &gemm_vnni}; }

}  // namespace torchqat::kernels
