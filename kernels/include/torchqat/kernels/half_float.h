// float16 / bfloat16 <-> float32 conversions, bit-exact with c10::Half and
// c10::BFloat16 (round to nearest even). Kernels compute in float32 and use
// these at the load and store; the vector paths must match them exactly.
#pragma once

#include <cstdint>

#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels {

TORCHQAT_HD float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t magnitude = h & 0x7fffu;
  if (magnitude >= 0x7c00u) {  // Inf or NaN: keep the payload
    return ScalarOps::from_bits(int32_t(sign | 0x7f800000u | ((magnitude & 0x3ffu) << 13)));
  }
  if (magnitude >= 0x0400u) {  // normal: rebias the exponent
    return ScalarOps::from_bits(int32_t(sign | ((magnitude << 13) + ((127u - 15u) << 23))));
  }
  // Subnormal or zero: magnitude * 2^-24 is exact in float32.
  const float v = float(magnitude) * 5.9604644775390625e-8f;
  return ScalarOps::from_bits(ScalarOps::bits(v) | int32_t(sign));
}

TORCHQAT_HD uint16_t float_to_half(float f) {
  uint32_t x = uint32_t(ScalarOps::bits(f));
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint32_t h;
  if (x >= 0x47800000u) {  // |f| >= 2^16: Inf, NaN, or overflow to Inf
    h = x > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (x < 0x38800000u) {
    // Below half's smallest normal: adding 0.5 lets the FPU round the value to
    // a multiple of 2^-24 (half's subnormal step), ties to even.
    const float magic = ScalarOps::from_bits(int32_t((127 - 15 + 23 - 10 + 1) << 23));
    h = uint32_t(ScalarOps::bits(ScalarOps::from_bits(int32_t(x)) + magic)) -
        uint32_t(ScalarOps::bits(magic));
  } else {
    const uint32_t mantissa_odd = (x >> 13) & 1u;
    x += (uint32_t(15 - 127) << 23) + 0xfffu + mantissa_odd;  // rebias and round
    h = x >> 13;
  }
  return uint16_t(h | (sign >> 16));
}

TORCHQAT_HD float bfloat16_to_float(uint16_t b) {
  return ScalarOps::from_bits(int32_t(uint32_t(b) << 16));
}

TORCHQAT_HD uint16_t float_to_bfloat16(float f) {
  if (f != f) return 0x7fc0u;  // NaN, as c10::BFloat16
  const uint32_t x = uint32_t(ScalarOps::bits(f));
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace torchqat::kernels
