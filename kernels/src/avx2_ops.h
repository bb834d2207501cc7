// AVX2 lane policy (8 floats) for the templates of quant_math.h. Included
// only by TUs compiled with -mavx2 -mfma -mf16c.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "elements.h"

namespace torchqat::kernels {
namespace {

struct Avx2Ops {
  static constexpr int64_t kWidth = 8;
  using F = __m256;
  using I = __m256i;
  using M = __m256;  // all-ones lanes where true

  static F set1(float v) { return _mm256_set1_ps(v); }
  static I set1_i(int32_t v) { return _mm256_set1_epi32(v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  static M le(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static M both(M a, M b) { return _mm256_and_ps(a, b); }
  static M either(M a, M b) { return _mm256_or_ps(a, b); }
  static M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static F select(M m, F a, F b) { return _mm256_blendv_ps(b, a, m); }
  static int64_t count(M m) { return __builtin_popcount(unsigned(_mm256_movemask_ps(m))); }
  static float min_lane(F v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
  }
  static float max_lane(F v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
  }
  static float sum(F v) {  // fixed order: lanes 0..7 added pairwise
    const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // maxps/minps return their second operand when either is NaN.
  static F max_keep_nan(F v, F lo) { return _mm256_max_ps(lo, v); }
  static F min_keep_nan(F v, F hi) { return _mm256_min_ps(hi, v); }
  static F round_even(F v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static I bits(F v) { return _mm256_castps_si256(v); }
  static F from_bits(I i) { return _mm256_castsi256_ps(i); }
  static F abs(F v) { return from_bits(_mm256_and_si256(bits(v), set1_i(0x7fffffff))); }
  static F with_sign_of(F magnitude, F sign_src) {
    return _mm256_or_ps(magnitude, _mm256_and_ps(sign_src, set1(-0.0f)));
  }
  static I and_i(I a, I b) { return _mm256_and_si256(a, b); }
  static I max_i(I a, I b) { return _mm256_max_epi32(a, b); }
  static I sub_i(I a, I b) { return _mm256_sub_epi32(a, b); }

  static F loadu(const float* p) { return _mm256_loadu_ps(p); }
  static F reciprocal(F v) { return _mm256_div_ps(set1(1.0f), v); }  // exact IEEE 1/v

  static F load(F32, const float* p) { return _mm256_loadu_ps(p); }
  static F load(F16, const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load(BF16, const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return from_bits(_mm256_slli_epi32(wide, 16));
  }
  static void store(F32, float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store(F16, uint16_t* p, F v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static void store(BF16, uint16_t* p, F v) {
    // Round to nearest even as float_to_bfloat16; NaN becomes 0x7fc0.
    const I u = bits(v);
    const I lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), set1_i(1));
    I r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, set1_i(0x7fff)), lsb), 16);
    r = _mm256_blendv_epi8(r, set1_i(0x7fc0), bits(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    const I packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }
  static void store_mask(uint8_t* p, M m) { *p = uint8_t(_mm256_movemask_ps(m)); }
};

}  // namespace
}  // namespace torchqat::kernels
