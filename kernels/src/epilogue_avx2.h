// The GEMM epilogue (gemm_epilogue) vectorised over 8 consecutive full
// columns with AVX2, for the kernels that end in it (INT8 GEMM, depthwise
// conv). Included only by TUs compiled with -mavx2.
#pragma once

#include <immintrin.h>

#include "torchqat/kernels/gemm_int8.h"

namespace torchqat::kernels::avx2 {

// What the epilogue needs of 8 consecutive full columns, loaded once per
// microkernel call rather than once per row (it was 15% of a K = 256 GEMM).
struct Columns8 {
  __m256i zero_term;  // a_zero * col_sums
  __m256 multiplier, bias;
  Columns8(const GemmInt8Args& args, int64_t n)
      : zero_term(_mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(args.b.col_sums + n)),
                                     _mm256_set1_epi32(args.a_zero))),
        multiplier(args.multiplier ? _mm256_loadu_ps(args.multiplier + n) : _mm256_setzero_ps()),
        bias(args.bias ? _mm256_loadu_ps(args.bias + n) : _mm256_setzero_ps()) {}
};

// The epilogue of acc - a_zero * col_sums for 8 consecutive full columns,
// vectorised with the same float operations (in the same order) as
// gemm_epilogue.
inline void epilogue8(const GemmInt8Args& args, const Columns8& cols, int64_t m, int64_t n, __m256i acc) {
  acc = _mm256_sub_epi32(acc, cols.zero_term);
  const int64_t at = m * args.ldc + n;
  if (args.output == GemmOutput::kInt32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<int32_t*>(args.out) + at), acc);
    return;
  }
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), cols.multiplier);
  if (args.bias) v = _mm256_add_ps(v, cols.bias);
  if (args.output == GemmOutput::kFloat) {
    if (args.relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
    _mm256_storeu_ps(static_cast<float*>(args.out) + at, v);
    return;
  }
  __m256 q = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(args.inv_out_scale)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm256_add_ps(q, _mm256_set1_ps(float(args.out_zero)));
  const float lo = args.relu ? float(args.out_zero) : 0.0f;
  q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(lo)), _mm256_set1_ps(255.0f));
  const __m256i i32 = _mm256_cvtps_epi32(q);  // exact: q is a whole number in [0, 255]
  const __m128i i16 = _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  const __m128i u8 = _mm_packus_epi16(i16, i16);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(args.out) + at), u8);
}

}  // namespace torchqat::kernels::avx2
