// AVX2 INT8 GEMM: 6 x 16 microkernel on int16 pairs (vpmaddwd), exact int32
// accumulation; activations are widened to int16 pairs once per row block.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "torchqat/kernels/gemm_int8.h"
#include "epilogue_avx2.h"
#include "gemm_variants.h"

namespace torchqat::kernels {
namespace {

using avx2::Columns8;
using avx2::epilogue8;

constexpr int64_t kRows = 6;         // rows per microkernel: 12 accumulators, 2 weight registers
constexpr int64_t kBlockRows = 60;   // rows widened together; each weight panel is read once per block

// Few rows read each panel straight from memory, once: a software prefetch
// kPrefetchBytes ahead keeps enough lines in flight (the hardware prefetcher
// alone sustained 8 GB/s on the development VM, this 13-19 GB/s).
constexpr int64_t kPrefetchBytes = 4096;

// Weights of one k pair for 16 columns as two int16 registers (columns 0-7
// and 8-15): from int8 (widened here, vpmovsxbw) or from a panel widened
// beforehand (when many rows share it).
struct Int8Panel {
  const int8_t* p;
  void load(int64_t j, __m256i* b0, __m256i* b1) const {
    _mm_prefetch(reinterpret_cast<const char*>(p + j * 32 + kPrefetchBytes), _MM_HINT_T0);
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j * 32));
    *b0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(raw));
    *b1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(raw, 1));
  }
};
struct Int16Panel {
  const int16_t* p;
  void load(int64_t j, __m256i* b0, __m256i* b1) const {
    *b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j * 32));
    *b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j * 32 + 16));
  }
};

// acc[r][0..15] for rows r < kRowsUsed over all k pairs of one panel; a16
// holds the rows' values as int16 pairs (row stride `stride`).
template <int kRowsUsed, class Panel>
void microkernel(const int16_t* a16, int64_t stride, int64_t k_pairs, Panel panel,
                 int32_t* acc /*[kRows][16]*/) {
  __m256i c[kRowsUsed][2];
  for (int r = 0; r < kRowsUsed; ++r) c[r][0] = c[r][1] = _mm256_setzero_si256();
  for (int64_t j = 0; j < k_pairs; ++j) {
    __m256i b0, b1;
    panel.load(j, &b0, &b1);
    for (int r = 0; r < kRowsUsed; ++r) {
      // vbroadcastss from memory: a load-port broadcast, no vector ALU slot.
      const __m256i a = _mm256_castps_si256(
          _mm256_broadcast_ss(reinterpret_cast<const float*>(a16 + r * stride + j * 2)));
      c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(a, b0));
      c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(a, b1));
    }
  }
  for (int r = 0; r < kRowsUsed; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16), c[r][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16 + 8), c[r][1]);
  }
}

template <class Panel>
void run_microkernel(int64_t rows, const int16_t* a, int64_t stride, int64_t k_pairs, Panel panel, int32_t* acc) {
  switch (rows) {
    case 6: microkernel<6>(a, stride, k_pairs, panel, acc); break;
    case 5: microkernel<5>(a, stride, k_pairs, panel, acc); break;
    case 4: microkernel<4>(a, stride, k_pairs, panel, acc); break;
    case 3: microkernel<3>(a, stride, k_pairs, panel, acc); break;
    case 2: microkernel<2>(a, stride, k_pairs, panel, acc); break;
    default: microkernel<1>(a, stride, k_pairs, panel, acc); break;
  }
}

void finish_rows(const GemmInt8Args& args, const int32_t* acc, int64_t m0, int64_t rows, int64_t p) {
  const PackedInt8View& b = args.b;
  const int64_t n0 = p * kPanel, cols = std::min(kPanel, b.n - n0);
  for (int64_t half = 0; half < 2; ++half) {
    const int64_t n = n0 + half * 8;
    const int64_t valid = std::min<int64_t>(8, cols - half * 8);
    if (valid <= 0) break;
    if (valid == 8) {
      const Columns8 constants(args, n);
      for (int64_t r = 0; r < rows; ++r) {
        epilogue8(args, constants, m0 + r, n,
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + r * 16 + half * 8)));
      }
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < valid; ++c) {
          gemm_epilogue(args, m0 + r, n + c, acc[r * 16 + half * 8 + c] - args.a_zero * b.col_sums[n + c]);
        }
      }
    }
  }
}

void gemm_avx2(const GemmInt8Args& args, int64_t m_begin, int64_t m_end, int64_t p_begin, int64_t p_end) {
  const PackedInt8View& b = args.b;
  const int64_t k_pairs = b.k_pairs(), stride = k_pairs * 2;
  const int64_t max_block = std::min(kBlockRows, m_end - m_begin);
  std::vector<int16_t> a16(size_t(max_block * stride));
  std::vector<int16_t> w16(max_block > kRows ? size_t(k_pairs * kPanel * 2) : 0);  // widened panels
  alignas(32) int32_t acc[kRows * 16];
  for (int64_t mb = m_begin; mb < m_end; mb += kBlockRows) {
    const int64_t block = std::min(kBlockRows, m_end - mb);
    for (int64_t r = 0; r < block; ++r) {  // widen to int16, K padded with a zero
      const uint8_t* src = args.a + (mb + r) * args.lda;
      int16_t* dst = a16.data() + r * stride;
      for (int64_t kk = 0; kk < b.k; ++kk) dst[kk] = int16_t(src[kk]);
      if (b.k % 2) dst[b.k] = 0;
    }
    for (int64_t p = p_begin; p < p_end; ++p) {
      const int8_t* panel = b.data + p * k_pairs * kPanel * 2;
      // A panel shared by several microkernel calls is widened once.
      const bool widen = block > kRows;
      if (widen) {
        for (int64_t i = 0; i < k_pairs * kPanel * 2; i += 16) {
          _mm_prefetch(reinterpret_cast<const char*>(panel + i + kPrefetchBytes), _MM_HINT_T0);
          const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(panel + i));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(w16.data() + i), _mm256_cvtepi8_epi16(raw));
        }
      }
      for (int64_t r0 = 0; r0 < block; r0 += kRows) {
        const int64_t rows = std::min(kRows, block - r0);
        const int16_t* a = a16.data() + r0 * stride;
        if (widen) {
          run_microkernel(rows, a, stride, k_pairs, Int16Panel{w16.data()}, acc);
        } else {
          run_microkernel(rows, a, stride, k_pairs, Int8Panel{panel}, acc);
        }
        finish_rows(args, acc, mb + r0, rows, p);
      }
    }
  }
}

}  // namespace

GemmInt8Kernels avx2_gemm_int8_kernels() { return {Isa::kAvx2, &gemm_avx2}; }

}  // namespace torchqat::kernels
