// uint8 residual add: the reference against the formula written out in double
// (exact here: the test scales are powers of two, so every term and sum is
// exact in float), and every variant the CPU runs bit-exact against the
// reference on odd lengths, all byte pairs, with and without ReLU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "torchqat/kernels/add_u8.h"

namespace k = torchqat::kernels;

namespace {

struct Operands {
  std::vector<uint8_t> a, b;
};

// Every (a, b) byte pair, then random bytes up to n.
Operands operands(int64_t n, std::mt19937& gen) {
  std::uniform_int_distribution<int> byte(0, 255);
  Operands o{std::vector<uint8_t>(size_t(n)), std::vector<uint8_t>(size_t(n))};
  for (int64_t i = 0; i < n; ++i) {
    o.a[i] = i < 65536 ? uint8_t(i & 255) : uint8_t(byte(gen));
    o.b[i] = i < 65536 ? uint8_t(i >> 8) : uint8_t(byte(gen));
  }
  return o;
}

TEST(AddU8, ReferenceMatchesTheFormula) {
  std::mt19937 gen(3);
  const auto o = operands(65536, gen);
  for (bool relu : {false, true}) {
    const k::AddU8Args args{0.0625f, 100.0f, 0.125f, 7.0f, relu};
    const k::QuantizeU8Args grid{0.25f, 20.0f, 0.0f, 255.0f};
    std::vector<float> y(o.a.size());
    std::vector<uint8_t> q(o.a.size());
    k::add_u8_to_float_reference(o.a.data(), o.b.data(), args, y.data(), 0, int64_t(y.size()));
    k::add_u8_to_u8_reference(o.a.data(), o.b.data(), args, grid, q.data(), 0, int64_t(q.size()));
    for (size_t i = 0; i < y.size(); ++i) {
      double want = (double(o.a[i]) - 100.0) * 0.0625 + (double(o.b[i]) - 7.0) * 0.125;
      if (relu) want = std::max(want, 0.0);
      ASSERT_EQ(double(y[i]), want) << "a = " << int(o.a[i]) << " b = " << int(o.b[i]);
      const double want_q = std::min(std::max(std::nearbyint(want / 0.25) + 20.0, 0.0), 255.0);
      ASSERT_EQ(double(q[i]), want_q) << "a = " << int(o.a[i]) << " b = " << int(o.b[i]);
    }
  }
}

TEST(AddU8, VariantsMatchTheReferenceOnOddLengths) {
  std::mt19937 gen(5);
  const k::QuantizeU8Args grid{0.0731f, 61.0f, 0.0f, 255.0f};
  int ran = 0;
  for (const auto& v : k::add_u8_variants()) {
    if (!k::isa_supported(v.isa)) continue;
    ++ran;
    for (bool relu : {false, true}) {
      const k::AddU8Args args{0.0413f, 129.0f, 0.0377f, 3.0f, relu};
      for (int64_t n : {1, 7, 8, 9, 31, 32, 33, 63, 65, 257, 65536 + 77}) {
        const auto o = operands(n, gen);
        std::vector<float> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n), -1.0f);
        k::add_u8_to_float_reference(o.a.data(), o.b.data(), args, ref.data(), 0, n);
        v.to_float(o.a.data(), o.b.data(), args, got.data(), 0, n);
        ASSERT_EQ(got, ref) << k::isa_name(v.isa) << " n = " << n;
        std::vector<uint8_t> ref_q(static_cast<size_t>(n)), got_q(static_cast<size_t>(n), 0xAB);
        k::add_u8_to_u8_reference(o.a.data(), o.b.data(), args, grid, ref_q.data(), 0, n);
        v.to_u8(o.a.data(), o.b.data(), args, grid, got_q.data(), 0, n);
        ASSERT_EQ(got_q, ref_q) << k::isa_name(v.isa) << " n = " << n;
        // An offset range writes only its own elements.
        std::vector<uint8_t> part(static_cast<size_t>(n), 0xAB);
        v.to_u8(o.a.data(), o.b.data(), args, grid, part.data(), n / 3, n);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(part[i], i < n / 3 ? 0xAB : ref_q[i]) << k::isa_name(v.isa);
      }
    }
  }
  EXPECT_GE(ran, 1);
}

}  // namespace
