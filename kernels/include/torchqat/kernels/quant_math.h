// The one definition of torchqat's quantization math: integer ranges,
// rounding, clamping, the affine and FP8 fake-quantization of one value.
//
// Every kernel (scalar reference, AVX2, AVX-512, CUDA) instantiates the same
// templates below with its own lane type, so the vector paths cannot drift
// from the reference: they are the reference, evaluated 8 or 16 lanes wide.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TORCHQAT_HD __host__ __device__ __forceinline__
#else
// always_inline: these functions are compiled into TUs with different -m
// flags; an out-of-line copy built with AVX-512 must never be picked by the
// linker for a caller in the portable TU.
#define TORCHQAT_HD __attribute__((always_inline)) inline
#endif

namespace torchqat::kernels {

// ---------------------------------------------------------------------------
// Integer ranges.

struct QuantRange {
  int64_t qmin;
  int64_t qmax;
};

// [qmin, qmax] for `bits`-bit integers. narrow_range drops the most negative
// code (signed: [-127, 127] at 8 bits) or zero (unsigned: [1, 255]).
constexpr QuantRange quant_range(int bits, bool is_signed, bool narrow_range) {
  const int64_t levels = int64_t{1} << bits;
  const int64_t lo = is_signed ? -levels / 2 : 0;
  const int64_t hi = is_signed ? levels / 2 - 1 : levels - 1;
  return {narrow_range ? lo + 1 : lo, hi};
}

// Integer codes up to this magnitude are exact in float32; within it, the
// float32 arithmetic below is bit-identical to ATen's int64/double path.
constexpr int64_t kExactFloatInteger = int64_t{1} << 24;

// ---------------------------------------------------------------------------
// Scalar lane policy. Vector policies (kernels/src/*_ops.h) provide the same
// static functions over registers; the CUDA kernels use this one.

struct ScalarOps {
  using F = float;
  using I = int32_t;
  using M = bool;

  static TORCHQAT_HD F set1(float v) { return v; }
  static TORCHQAT_HD I set1_i(int32_t v) { return v; }
  static TORCHQAT_HD F add(F a, F b) { return a + b; }
  static TORCHQAT_HD F sub(F a, F b) { return a - b; }
  static TORCHQAT_HD F mul(F a, F b) { return a * b; }
  static TORCHQAT_HD M ge(F a, F b) { return a >= b; }  // false on NaN
  static TORCHQAT_HD M le(F a, F b) { return a <= b; }  // false on NaN
  static TORCHQAT_HD M both(M a, M b) { return a && b; }
  static TORCHQAT_HD M either(M a, M b) { return a || b; }
  static TORCHQAT_HD M lt(F a, F b) { return a < b; }
  static TORCHQAT_HD M gt(F a, F b) { return a > b; }
  static TORCHQAT_HD F select(M m, F a, F b) { return m ? a : b; }  // a where m, else b
  // Clamps that let NaN through (std::fmax/fmin would swallow it).
  static TORCHQAT_HD F max_keep_nan(F v, F lo) { return v < lo ? lo : v; }
  static TORCHQAT_HD F min_keep_nan(F v, F hi) { return v > hi ? hi : v; }
  // Round half to even: the default FP environment, as ATen's nearbyint.
  static TORCHQAT_HD F round_even(F v) {
#if defined(__CUDA_ARCH__)
    return rintf(v);
#else
    return std::nearbyint(v);
#endif
  }
  static TORCHQAT_HD I bits(F v) {
#if defined(__CUDA_ARCH__)
    return __float_as_int(v);
#else
    I i;
    std::memcpy(&i, &v, sizeof(i));
    return i;
#endif
  }
  static TORCHQAT_HD F from_bits(I i) {
#if defined(__CUDA_ARCH__)
    return __int_as_float(i);
#else
    F v;
    std::memcpy(&v, &i, sizeof(v));
    return v;
#endif
  }
  static TORCHQAT_HD F abs(F v) { return from_bits(bits(v) & 0x7fffffff); }
  // Sign of `sign_src` on the non-negative `magnitude`.
  static TORCHQAT_HD F with_sign_of(F magnitude, F sign_src) {
    return from_bits(bits(magnitude) | (bits(sign_src) & int32_t(0x80000000u)));
  }
  static TORCHQAT_HD I and_i(I a, I b) { return a & b; }
  static TORCHQAT_HD I max_i(I a, I b) { return a > b ? a : b; }
  static TORCHQAT_HD I sub_i(I a, I b) { return a - b; }
};

// ---------------------------------------------------------------------------
// Affine (integer) fake quantization.
//
//   q = round_half_even(x * (1/scale)) + zero_point      (float32, as ATen)
//   y = (clamp(q, qmin, qmax) - zero_point) * scale
//   in_range = qmin <= q <= qmax                         (the STE mask)
//
// Multiplying by the reciprocal (not dividing) is what ATen does; keeping it
// makes results bit-identical to torch.fake_quantize_per_*_affine. NaN stays
// NaN (ATen turns it into qmin) and has in_range false.

TORCHQAT_HD float reciprocal_scale(float scale) { return 1.0f / scale; }

template <class V>
struct AffineParams {
  typename V::F inv_scale, scale, zero_point, qmin, qmax;
};

template <class V>
TORCHQAT_HD AffineParams<V> make_affine_params(float scale, float zero_point, float qmin,
                                               float qmax) {
  return {V::set1(reciprocal_scale(scale)), V::set1(scale), V::set1(zero_point), V::set1(qmin),
          V::set1(qmax)};
}

template <class V>
TORCHQAT_HD typename V::F affine_fake_quant(typename V::F x, const AffineParams<V>& p,
                                            typename V::M* in_range) {
  const auto q = V::add(V::round_even(V::mul(x, p.inv_scale)), p.zero_point);
  *in_range = V::both(V::ge(q, p.qmin), V::le(q, p.qmax));
  const auto clamped = V::min_keep_nan(V::max_keep_nan(q, p.qmin), p.qmax);
  return V::mul(V::sub(clamped, p.zero_point), p.scale);
}

// ---------------------------------------------------------------------------
// Learned step size: LSQ (Esser et al. 2019) and LSQ+ (Bhalgat et al. 2020).
//
// With v = x / scale (as x * (1/scale)), r = round(v), q = r + zero_point and
// the forward y = (clamp(q, qmin, qmax) - zero_point) * scale:
//   dy/dx          = 1 inside [qmin, qmax], 0 outside          (STE)
//   dy/dscale      = r - v inside, qmin - zp below, qmax - zp above
//   dy/dzero_point = 0 inside, -scale outside
// Per element this gives d_x, grad * dy/dscale and grad where clamped; the
// kernels sum the last two per scale (the zero-point sum times -scale), then
// apply grad_factor once. A NaN x contributes nothing.

template <class V>
struct LsqTerms {
  typename V::F grad_x;       // grad inside, 0 outside
  typename V::F scale_term;   // grad * dy/dscale
  typename V::F outside_grad; // grad where clamped, else 0
};

template <class V>
TORCHQAT_HD LsqTerms<V> lsq_backward_terms(typename V::F x, typename V::F grad,
                                           const AffineParams<V>& p) {
  const auto v = V::mul(x, p.inv_scale);
  const auto r = V::round_even(v);
  const auto q = V::add(r, p.zero_point);
  const auto below = V::lt(q, p.qmin);
  const auto above = V::gt(q, p.qmax);
  const auto inside = V::both(V::ge(q, p.qmin), V::le(q, p.qmax));
  const auto zero = V::set1(0.0f);
  const auto clamp_term = V::select(below, V::sub(p.qmin, p.zero_point),
                                    V::select(above, V::sub(p.qmax, p.zero_point), zero));
  const auto term = V::select(inside, V::sub(r, v), clamp_term);
  // Selected, never multiplied by a 0/1 mask: a NaN grad stays where it belongs.
  const auto grad_x = V::select(inside, grad, zero);
  const auto outside_grad = V::select(V::either(below, above), grad, zero);
  return {grad_x, V::mul(V::add(grad_x, outside_grad), term), outside_grad};
}

// ---------------------------------------------------------------------------
// Scale and zero point from an observed range [min_val, max_val], widened
// to hold zero so that zero is exactly representable; torch.ao's formulas:
//   symmetric: scale = max(-min, max) / ((qmax - qmin) / 2), zero_point 0 for
//              signed ranges, (qmin + qmax + 1) / 2 for unsigned ones;
//   affine:    scale = (max - min) / (qmax - qmin),
//              zero_point = clamp(qmin - round(min / scale), qmin, qmax);
// scale is at least float32's eps (an all-zero range gives scale = eps).

struct QParams {
  float scale;
  int32_t zero_point;
};

TORCHQAT_HD QParams choose_qparams(float min_val, float max_val, int64_t qmin, int64_t qmax,
                                   bool symmetric) {
  constexpr float kEps = 1.1920928955078125e-07f;  // torch.finfo(torch.float32).eps
  const float lo = min_val < 0.0f ? min_val : 0.0f;
  const float hi = max_val > 0.0f ? max_val : 0.0f;
  float scale;
  int64_t zp;
  if (symmetric) {
    const float amax = -lo > hi ? -lo : hi;
    scale = amax / (float(qmax - qmin) / 2.0f);
    scale = scale > kEps ? scale : kEps;
    zp = qmin < 0 ? 0 : (qmin + qmax + 1) / 2;
  } else {
    scale = (hi - lo) / float(qmax - qmin);
    scale = scale > kEps ? scale : kEps;
    zp = qmin - int64_t(ScalarOps::round_even(lo / scale));
  }
  zp = zp < qmin ? qmin : (zp > qmax ? qmax : zp);
  return {scale, int32_t(zp)};
}

// ---------------------------------------------------------------------------
// FP8 fake quantization: v = x * (1/scale), rounded to the nearest value of
// the format (ties to even, subnormals included), saturated to +-max_finite,
// times scale. in_range = |v| <= max_finite (the STE mask); NaN stays NaN.

enum class Fp8Format : uint8_t { kE4M3, kE5M2 };

struct Fp8Spec {
  int mantissa_bits;
  int min_normal_exponent;  // unbiased
  float max_finite;
};

constexpr Fp8Spec fp8_spec(Fp8Format f) {
  // e4m3fn (no infinities, max 448) and e5m2 (IEEE-like, max 57344).
  return f == Fp8Format::kE4M3 ? Fp8Spec{3, -6, 448.0f} : Fp8Spec{2, -14, 57344.0f};
}

template <class V>
struct Fp8Params {
  typename V::F inv_scale, scale, max_finite;
  typename V::I min_exponent_bits;   // float32 exponent field of 2^min_normal_exponent
  typename V::I mantissa_shift;      // mantissa_bits << 23
};

template <class V>
TORCHQAT_HD Fp8Params<V> make_fp8_params(float scale, Fp8Spec s) {
  return {V::set1(reciprocal_scale(scale)), V::set1(scale), V::set1(s.max_finite),
          V::set1_i((127 + s.min_normal_exponent) << 23), V::set1_i(s.mantissa_bits << 23)};
}

template <class V>
TORCHQAT_HD typename V::F fp8_fake_quant(typename V::F x, const Fp8Params<V>& p,
                                         typename V::M* in_range) {
  const auto v = V::mul(x, p.inv_scale);
  const auto a = V::abs(v);
  *in_range = V::le(a, p.max_finite);
  const auto sat = V::min_keep_nan(a, p.max_finite);
  // Spacing of representable values around `sat`: 2^(max(e, emin) - mbits).
  // Both it and its reciprocal are powers of two, so the scaling is exact.
  const auto exponent = V::max_i(V::and_i(V::bits(sat), V::set1_i(0x7f800000)),
                                 p.min_exponent_bits);
  const auto quantum_bits = V::sub_i(exponent, p.mantissa_shift);
  const auto quantum = V::from_bits(quantum_bits);
  const auto inv_quantum = V::from_bits(V::sub_i(V::set1_i(254 << 23), quantum_bits));
  const auto rounded = V::mul(V::round_even(V::mul(sat, inv_quantum)), quantum);
  return V::mul(V::with_sign_of(rounded, v), p.scale);
}

}  // namespace torchqat::kernels
