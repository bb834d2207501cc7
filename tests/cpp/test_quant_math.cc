// The scalar definitions of quant_math.h / half_float.h against independent
// descriptions: bit layouts decoded by hand, hardware conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "torchqat/kernels/cpu_features.h"
#include "torchqat/kernels/half_float.h"
#include "torchqat/kernels/quant_math.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace k = torchqat::kernels;

namespace {

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// FP8 code -> value, straight from the format definitions (OCP FP8 spec).
float decode_fp8(uint8_t code, k::Fp8Format fmt) {
  const int exp_bits = fmt == k::Fp8Format::kE4M3 ? 4 : 5;
  const int man_bits = 7 - exp_bits;
  const int bias = (1 << (exp_bits - 1)) - 1;
  const int sign = code >> 7;
  const int e = (code >> man_bits) & ((1 << exp_bits) - 1);
  const int m = code & ((1 << man_bits) - 1);
  double v;
  if (fmt == k::Fp8Format::kE4M3 && e == 15 && m == 7) return NAN;
  if (fmt == k::Fp8Format::kE5M2 && e == 31) return m ? NAN : (sign ? -INFINITY : INFINITY);
  if (e == 0) {
    v = std::ldexp(double(m), 1 - bias - man_bits);
  } else {
    v = std::ldexp(1.0 + double(m) / (1 << man_bits), e - bias);
  }
  return float(sign ? -v : v);
}

#if defined(__x86_64__)
// The CPU's own conversions (F16C), an independent reference for half_float.h.
__attribute__((target("f16c"))) uint16_t hardware_float_to_half(float f) {
  return uint16_t(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}
__attribute__((target("f16c"))) float hardware_half_to_float(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(short(h))));
}
#endif

float fp8_quant(float x, k::Fp8Format fmt) {
  bool in_range;
  return k::fp8_fake_quant<k::ScalarOps>(x, k::make_fp8_params<k::ScalarOps>(1.0f, k::fp8_spec(fmt)),
                                         &in_range);
}

}  // namespace

TEST(QuantRange, MatchesTheIntegerTypes) {
  EXPECT_EQ(k::quant_range(8, true, false).qmin, -128);
  EXPECT_EQ(k::quant_range(8, true, false).qmax, 127);
  EXPECT_EQ(k::quant_range(8, true, true).qmin, -127);
  EXPECT_EQ(k::quant_range(8, false, false).qmax, 255);
  EXPECT_EQ(k::quant_range(8, false, true).qmin, 1);
  EXPECT_EQ(k::quant_range(4, true, false).qmin, -8);
  EXPECT_EQ(k::quant_range(4, true, false).qmax, 7);
  EXPECT_EQ(k::quant_range(2, true, false).qmin, -2);
  EXPECT_EQ(k::quant_range(16, false, false).qmax, 65535);
  EXPECT_EQ(k::quant_range(32, true, false).qmin, std::numeric_limits<int32_t>::min());
  EXPECT_EQ(k::quant_range(32, true, false).qmax, std::numeric_limits<int32_t>::max());
}

TEST(AffineScalar, RoundsHalfToEvenAndClamps) {
  const auto p = k::make_affine_params<k::ScalarOps>(0.5f, 3.0f, -8.0f, 7.0f);
  struct Case {
    float x, y;
    bool in_range;
  } cases[] = {
      {0.25f, 0.0f, true},    // 0.5 -> 0 (even), +3 -> 3, back to 0
      {0.75f, 1.0f, true},    // 1.5 -> 2
      {-0.25f, 0.0f, true},   // -0.5 -> -0
      {2.0f, 2.0f, true},     // q = 4 + 3 = 7 = qmax
      {2.25f, 2.0f, true},    // 4.5 -> 4 (even), q = 7
      {2.75f, 2.0f, false},   // 5.5 -> 6, q = 9 > 7: clamped
      {-5.5f, -5.5f, true},   // -11 + 3 = -8 = qmin
      {-5.75f, -5.5f, false}, // -11.5 -> -12 (even), q = -9 < -8: clamped
  };
  for (const auto& c : cases) {
    bool in_range;
    const float y = k::affine_fake_quant<k::ScalarOps>(c.x, p, &in_range);
    EXPECT_EQ(y, c.y) << "x = " << c.x;
    EXPECT_EQ(in_range, c.in_range) << "x = " << c.x;
  }
}

TEST(AffineScalar, NanPropagatesInfSaturates) {
  const auto p = k::make_affine_params<k::ScalarOps>(0.1f, 0.0f, -128.0f, 127.0f);
  bool in_range = true;
  EXPECT_TRUE(std::isnan(k::affine_fake_quant<k::ScalarOps>(NAN, p, &in_range)));
  EXPECT_FALSE(in_range);
  EXPECT_EQ(k::affine_fake_quant<k::ScalarOps>(INFINITY, p, &in_range), 127.0f * 0.1f);
  EXPECT_FALSE(in_range);
  EXPECT_EQ(k::affine_fake_quant<k::ScalarOps>(-INFINITY, p, &in_range), -128.0f * 0.1f);
  EXPECT_FALSE(in_range);
}

class Fp8Codes : public ::testing::TestWithParam<k::Fp8Format> {};

// Every finite code maps to itself; every midpoint between neighbours rounds
// to the neighbour with an even code; beyond the max it saturates.
TEST_P(Fp8Codes, RepresentableValuesAndTiesRoundToEven) {
  const auto fmt = GetParam();
  std::vector<std::pair<float, int>> values;  // (value, code) for non-negative finite codes
  for (int code = 0; code < 128; ++code) {
    const float v = decode_fp8(uint8_t(code), fmt);
    if (std::isfinite(v)) values.emplace_back(v, code);
  }
  for (const auto& [v, code] : values) {
    EXPECT_EQ(fp8_quant(v, fmt), v) << "code " << code;
    EXPECT_EQ(fp8_quant(-v, fmt), -v) << "code " << code;
  }
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    const auto [lo, lo_code] = values[i];
    const auto [hi, hi_code] = values[i + 1];
    const float mid = lo + (hi - lo) / 2;  // exact: one more bit than fp8 has
    const float even = (lo_code % 2 == 0) ? lo : hi;
    EXPECT_EQ(fp8_quant(mid, fmt), even) << "between " << lo << " and " << hi;
    EXPECT_EQ(fp8_quant(std::nextafter(mid, 0.0f), fmt), lo);
    EXPECT_EQ(fp8_quant(std::nextafter(mid, INFINITY), fmt), hi);
  }
  const float max_finite = values.back().first;
  EXPECT_EQ(max_finite, k::fp8_spec(fmt).max_finite);
  EXPECT_EQ(fp8_quant(max_finite * 4, fmt), max_finite);
  EXPECT_EQ(fp8_quant(-INFINITY, fmt), -max_finite);
  EXPECT_TRUE(std::isnan(fp8_quant(NAN, fmt)));
  EXPECT_EQ(float_to_bits(fp8_quant(-0.0f, fmt)), float_to_bits(-0.0f));
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp8Codes,
                         ::testing::Values(k::Fp8Format::kE4M3, k::Fp8Format::kE5M2),
                         [](const auto& info) {
                           return std::string(info.param == k::Fp8Format::kE4M3 ? "e4m3" : "e5m2");
                         });

TEST(HalfFloat, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = k::half_to_float(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_EQ(k::float_to_half(f) & 0x7c00, 0x7c00);
      continue;
    }
    EXPECT_EQ(k::float_to_half(f), h) << "half bits " << h;
  }
}

TEST(HalfFloat, MatchesF16cOnRandomAndEdgeFloats) {
#if defined(__x86_64__)
  if (!k::cpu_features().avx2) GTEST_SKIP() << "this CPU has no F16C: hardware comparison skipped";
  std::mt19937 rng(7);
  std::vector<uint32_t> inputs = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x477fefffu,
                                  0x477ff000u, 0x477ff001u, 0x33000000u, 0x33000001u, 0x387fe000u,
                                  0x387ff000u, 0x00000001u};
  for (int i = 0; i < 200000; ++i) inputs.push_back(rng());
  for (uint32_t u : inputs) {
    const float f = bits_to_float(u);
    if (std::isnan(f)) continue;
    const uint16_t hw = hardware_float_to_half(f);
    ASSERT_EQ(k::float_to_half(f), hw) << "float bits " << std::hex << u;
    ASSERT_EQ(float_to_bits(k::half_to_float(hw)), float_to_bits(hardware_half_to_float(hw)));
  }
#else
  GTEST_SKIP() << "not an x86-64 build";
#endif
}

TEST(BFloat16, RoundsToNearestEven) {
  EXPECT_EQ(k::float_to_bfloat16(bits_to_float(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(k::float_to_bfloat16(bits_to_float(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(k::float_to_bfloat16(bits_to_float(0x3f808001u)), 0x3f81);
  EXPECT_EQ(k::float_to_bfloat16(NAN), 0x7fc0);
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = k::bfloat16_to_float(uint16_t(b));
    if (!std::isnan(f)) EXPECT_EQ(k::float_to_bfloat16(f), b);
  }
}
