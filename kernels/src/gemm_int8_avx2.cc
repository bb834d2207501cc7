// AVX2 INT8 GEMM, 6 x 16 microkernels, exact int32 accumulation, two paths
// chosen per block of rows by its activations:
// - any uint8: int16 pairs (vpmaddwd) + vpaddd, activations widened to int16
//   once per row block; two vector ops per 16 multiply-adds;
// - every activation below 128 (7-bit activations, as torch.ao's reduce_range
//   gives, or 4-bit ones): vpmaddubsw on quads of k, whose int16 pair sums
//   cannot saturate (127 * 128 * 2 < 2^15), + vpmaddwd by ones + vpaddd:
//   three ops per 32. vpmaddubsw of full-range uint8 can saturate, which is
//   why it is taken only where a scan of the block rules that out.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
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

// The 7-bit path's microkernel. Two consecutive pairs of a panel, [pair 2q:
// 16 x 2][pair 2q + 1: 16 x 2], are interleaved by 16-bit unpacks into quads
// b[c, 4q .. 4q + 3]: register 0 holds columns 0-3 and 8-11, register 1
// columns 4-7 and 12-15 (put back in order at the store). a8 holds the rows as
// uint8 quads, zero-padded (row stride `stride`).
template <int kRowsUsed>
void microkernel_u7(const uint8_t* a8, int64_t stride, int64_t k_pairs, const int8_t* panel,
                    int32_t* acc /*[kRows][16]*/) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c[kRowsUsed][2];
  for (int r = 0; r < kRowsUsed; ++r) c[r][0] = c[r][1] = _mm256_setzero_si256();
  auto quad = [&](int64_t q, bool second_pair) {
    const int8_t* at = panel + q * 64;
    _mm_prefetch(reinterpret_cast<const char*>(at + kPrefetchBytes), _MM_HINT_T0);
    const __m256i pair0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
    const __m256i pair1 =
        second_pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 32)) : _mm256_setzero_si256();
    const __m256i b0 = _mm256_unpacklo_epi16(pair0, pair1), b1 = _mm256_unpackhi_epi16(pair0, pair1);
    for (int r = 0; r < kRowsUsed; ++r) {
      const __m256i x =
          _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(a8 + r * stride + q * 4)));
      c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones));
      c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones));
    }
  };
  const int64_t full = k_pairs / 2;
  for (int64_t q = 0; q < full; ++q) quad(q, true);
  if (k_pairs % 2) quad(full, false);  // the last quad holds one pair
  for (int r = 0; r < kRowsUsed; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16), _mm256_permute2x128_si256(c[r][0], c[r][1], 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16 + 8),
                        _mm256_permute2x128_si256(c[r][0], c[r][1], 0x31));
  }
}

// Whether every activation of rows [m0, m0 + rows) is below 128.
bool fits_7_bits(const GemmInt8Args& args, int64_t m0, int64_t rows) {
  const int64_t k = args.b.k;
  __m256i any = _mm256_setzero_si256();
  uint8_t tail = 0;
  for (int64_t r = m0; r < m0 + rows; ++r) {
    const uint8_t* row = args.a + r * args.lda;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) any = _mm256_or_si256(any, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i)));
    for (; i < k; ++i) tail |= row[i];
  }
  return _mm256_movemask_epi8(any) == 0 && tail < 128;
}

// f(std::integral_constant<int, rows>{}) for rows in [1, kRows]: the
// microkernels' row count as a compile-time constant.
template <class F>
void with_rows(int64_t rows, F&& f) {
  switch (rows) {
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
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
  std::vector<int16_t> a16, w16;  // widened rows and panels, allocated when a block first needs them
  const int64_t a8_stride = quad_stride(k_pairs);
  std::vector<uint8_t> a8;
  alignas(32) int32_t acc[kRows * 16];
  for (int64_t mb = m_begin; mb < m_end; mb += kBlockRows) {
    const int64_t block = std::min(kBlockRows, m_end - mb);
    if (fits_7_bits(args, mb, block)) {
      a8.resize(size_t(max_block * a8_stride));
      copy_rows_as_quads(args, mb, block, a8_stride, a8.data());
      for (int64_t p = p_begin; p < p_end; ++p) {
        const int8_t* panel = b.data + p * k_pairs * kPanel * 2;
        for (int64_t r0 = 0; r0 < block; r0 += kRows) {
          const int64_t rows = std::min(kRows, block - r0);
          with_rows(rows, [&](auto r) {
            microkernel_u7<decltype(r)::value>(a8.data() + r0 * a8_stride, a8_stride, k_pairs, panel, acc);
          });
          finish_rows(args, acc, mb + r0, rows, p);
        }
      }
      continue;
    }
    a16.resize(size_t(max_block * stride));
    if (max_block > kRows) w16.resize(size_t(k_pairs * kPanel * 2));
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
        with_rows(rows, [&](auto r) {
          if (widen) {
            microkernel<decltype(r)::value>(a, stride, k_pairs, Int16Panel{w16.data()}, acc);
          } else {
            microkernel<decltype(r)::value>(a, stride, k_pairs, Int8Panel{panel}, acc);
          }
        });
        finish_rows(args, acc, mb + r0, rows, p);
      }
    }
  }
}

}  // namespace

GemmInt8Kernels avx2_gemm_int8_kernels() { return {Isa::kAvx2, &gemm_avx2}; }

}  // namespace torchqat::kernels
