// AVX-512 lane policy (16 floats) for the templates of quant_math.h. Included
// only by TUs compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "elements.h"

namespace torchqat::kernels {
namespace {

struct Avx512Ops {
  static constexpr int64_t kWidth = 16;
  using F = __m512;
  using I = __m512i;
  using M = __mmask16;

  static F set1(float v) { return _mm512_set1_ps(v); }
  static I set1_i(int32_t v) { return _mm512_set1_epi32(v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static M le(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static M both(M a, M b) { return M(a & b); }
  static M either(M a, M b) { return M(a | b); }
  static M lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static F select(M m, F a, F b) { return _mm512_mask_blend_ps(m, b, a); }
  static int64_t count(M m) { return __builtin_popcount(unsigned(m)); }
  static float min_lane(F v) { return _mm512_reduce_min_ps(v); }
  static float max_lane(F v) { return _mm512_reduce_max_ps(v); }
  static float sum(F v) { return _mm512_reduce_add_ps(v); }
  // vmaxps/vminps return their second operand when either is NaN.
  static F max_keep_nan(F v, F lo) { return _mm512_max_ps(lo, v); }
  static F min_keep_nan(F v, F hi) { return _mm512_min_ps(hi, v); }
  static F round_even(F v) {
    return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static I bits(F v) { return _mm512_castps_si512(v); }
  static F from_bits(I i) { return _mm512_castsi512_ps(i); }
  static F abs(F v) { return from_bits(_mm512_and_si512(bits(v), set1_i(0x7fffffff))); }
  static F with_sign_of(F magnitude, F sign_src) {
    return from_bits(_mm512_or_si512(bits(magnitude),
                                     _mm512_and_si512(bits(sign_src), set1_i(int32_t(0x80000000u)))));
  }
  static I and_i(I a, I b) { return _mm512_and_si512(a, b); }
  static I max_i(I a, I b) { return _mm512_max_epi32(a, b); }
  static I sub_i(I a, I b) { return _mm512_sub_epi32(a, b); }

  static F loadu(const float* p) { return _mm512_loadu_ps(p); }
  static F reciprocal(F v) { return _mm512_div_ps(set1(1.0f), v); }  // exact IEEE 1/v

  static F load(F32, const float* p) { return _mm512_loadu_ps(p); }
  static F load(F16, const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load(BF16, const uint16_t* p) {
    const I wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return from_bits(_mm512_slli_epi32(wide, 16));
  }
  static void store(F32, float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store(F16, uint16_t* p, F v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static void store(BF16, uint16_t* p, F v) {
    // Round to nearest even as float_to_bfloat16; NaN becomes 0x7fc0.
    const I u = bits(v);
    const I lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), set1_i(1));
    I r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, set1_i(0x7fff)), lsb), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), set1_i(0x7fc0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
  }
  static void store_mask(uint8_t* p, M m) {
    const uint16_t bits16 = m;
    std::memcpy(p, &bits16, sizeof(bits16));  // little endian: lane 0 -> bit 0 of byte 0
  }
};

}  // namespace
}  // namespace torchqat::kernels
