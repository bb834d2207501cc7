// AVX2 variant of the uint8 residual add (add_u8.h): 8 sums per step to
// float, 32 per step to uint8. Compiled with -mavx2 -mfma (no contraction);
// called only when cpu_features().avx2.
#include <immintrin.h>

#include "avx2_ops.h"
#include "gemm_variants.h"
#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels {
namespace {

struct Terms {
  __m256 a_scale, a_zero, b_scale, b_zero;
  bool relu;

  explicit Terms(const AddU8Args& args)
      : a_scale(_mm256_set1_ps(args.a_scale)), a_zero(_mm256_set1_ps(args.a_zero)),
        b_scale(_mm256_set1_ps(args.b_scale)), b_zero(_mm256_set1_ps(args.b_zero)), relu(args.relu) {}
};

inline __m256 widen8(const uint8_t* q) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
}

// Eight sums in the reference's order of operations.
inline __m256 sum8(const uint8_t* a, const uint8_t* b, const Terms& t) {
  const __m256 fa = _mm256_mul_ps(_mm256_sub_ps(widen8(a), t.a_zero), t.a_scale);
  const __m256 fb = _mm256_mul_ps(_mm256_sub_ps(widen8(b), t.b_zero), t.b_scale);
  const __m256 y = _mm256_add_ps(fa, fb);
  return t.relu ? _mm256_max_ps(y, _mm256_setzero_ps()) : y;
}

void add_u8_to_float_avx2(const uint8_t* a, const uint8_t* b, const AddU8Args& args, float* out, int64_t begin,
                          int64_t end) {
  const Terms t(args);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) _mm256_storeu_ps(out + i, sum8(a + i, b + i, t));
  add_u8_to_float_reference(a, b, args, out, i, end);
}

void add_u8_to_u8_avx2(const uint8_t* a, const uint8_t* b, const AddU8Args& args, const QuantizeU8Args& out_grid,
                       uint8_t* out, int64_t begin, int64_t end) {
  const Terms t(args);
  const __m256 inv_scale = _mm256_set1_ps(reciprocal_scale(out_grid.scale));
  const __m256 zero_point = _mm256_set1_ps(out_grid.zero_point);
  const __m256 qmin = _mm256_set1_ps(out_grid.qmin), qmax = _mm256_set1_ps(out_grid.qmax);
  auto quantize8 = [&](int64_t at) {
    const __m256 q = _mm256_add_ps(Avx2Ops::round_even(_mm256_mul_ps(sum8(a + at, b + at, t), inv_scale)),
                                   zero_point);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(q, qmin), qmax));
  };
  // packs interleave 128-bit lanes; this permutation puts the bytes back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = begin;
  for (; i + 32 <= end; i += 32) {
    const __m256i lo = _mm256_packs_epi32(quantize8(i), quantize8(i + 8));
    const __m256i hi = _mm256_packs_epi32(quantize8(i + 16), quantize8(i + 24));
    const __m256i bytes = _mm256_packus_epi16(lo, hi);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  add_u8_to_u8_reference(a, b, args, out_grid, out, i, end);
}

}  // namespace

AddU8Kernels avx2_add_u8_kernels() { return {Isa::kAvx2, &add_u8_to_float_avx2, &add_u8_to_u8_avx2}; }

}  // namespace torchqat::kernels
