// uint8 quantization: the reference against the formula written out in
// double, and every variant the CPU runs bit-exact against the reference, on
// odd lengths, ties, NaN / inf and out-of-range values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "torchqat/kernels/quantize.h"

namespace k = torchqat::kernels;

namespace {

std::vector<float> test_values(int64_t n, std::mt19937& gen) {
  std::uniform_real_distribution<float> u(-40.0f, 40.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = u(gen);
  const float specials[] = {0.0f, -0.0f, 0.25f, 0.75f, 1.25f, -0.25f, 1e30f, -1e30f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  for (size_t i = 0; i < x.size(); i += 3) x[i] = specials[(i / 3) % std::size(specials)];
  return x;
}

// q written out: round half to even of x / scale (as x * (1/scale) in float), + zero point, clamped; NaN -> qmin.
uint8_t expected_q(float x, const k::QuantizeU8Args& a) {
  if (std::isnan(x)) return uint8_t(a.qmin);
  const float v = x * (1.0f / a.scale);
  const double r = std::nearbyint(double(v)) + a.zero_point;
  return uint8_t(std::min<double>(std::max<double>(r, a.qmin), a.qmax));
}

TEST(QuantizeU8, ReferenceMatchesTheFormula) {
  std::mt19937 gen(7);
  const auto x = test_values(1000, gen);
  for (const k::QuantizeU8Args args : {k::QuantizeU8Args{0.5f, 128.0f, 0.0f, 255.0f},
                                       k::QuantizeU8Args{0.1f, 3.0f, 0.0f, 15.0f},
                                       k::QuantizeU8Args{0.25f, 0.0f, 1.0f, 255.0f}}) {
    std::vector<uint8_t> out(x.size());
    k::quantize_u8_reference(x.data(), args, out.data(), 0, int64_t(x.size()));
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(out[i], expected_q(x[i], args)) << "x = " << x[i];
  }
}

TEST(QuantizeU8, VariantsMatchTheReferenceOnOddLengths) {
  std::mt19937 gen(11);
  const k::QuantizeU8Args args{0.37f, 91.0f, 0.0f, 255.0f};
  int ran = 0;
  for (const auto& v : k::quantize_variants()) {
    if (!k::isa_supported(v.isa)) continue;
    ++ran;
    for (int64_t n : {1, 7, 31, 32, 33, 63, 64, 65, 257, 1000}) {
      const auto x = test_values(n, gen);
      std::vector<uint8_t> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n), 0xAB);
      k::quantize_u8_reference(x.data(), args, ref.data(), 0, n);
      v.quantize_u8(x.data(), args, got.data(), 0, n);
      ASSERT_EQ(got, ref) << k::isa_name(v.isa) << " n = " << n;
      // An offset range writes only its own elements.
      std::vector<uint8_t> part(static_cast<size_t>(n), 0xAB);
      v.quantize_u8(x.data(), args, part.data(), n / 3, n);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(part[i], i < n / 3 ? 0xAB : ref[i]) << k::isa_name(v.isa);
    }
  }
  EXPECT_GE(ran, 1);
}

}  // namespace
