// W4A8 Linear kernels against the scalar reference: bit-exact where every
// partial sum is representable (power-of-two scales), to float rounding with
// arbitrary scales; odd shapes (rows on both sides of the panel path's
// threshold), every group size, zero points and extremes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "torchqat/kernels/gemm_w4a8.h"

namespace k = torchqat::kernels;

namespace {

struct Problem {
  int64_t m, n, kk, group;
  std::vector<uint8_t> x, packed;
  std::vector<int8_t> q;
  std::vector<float> scales, weight_sums, bias;
};

// fill 0: random; 1: x = 255, q = -8 (the largest products); 2: x = 255, q = 7.
Problem make_problem(int64_t m, int64_t n, int64_t kk, int64_t group, std::mt19937& gen, int fill, bool exact) {
  Problem p{m, n, kk, group, {}, {}, {}, {}, {}, {}};
  std::uniform_int_distribution<int> ux(0, 255), uq(-8, 7), ue(-6, -3);  // every partial sum below 2^24 units of 2^-6
  std::uniform_real_distribution<float> us(0.001f, 0.1f), ub(-1.0f, 1.0f);
  p.x.resize(size_t(m * kk));
  p.q.resize(size_t(n * kk));
  for (auto& v : p.x) v = fill ? 255 : uint8_t(ux(gen));
  for (auto& v : p.q) v = fill == 1 ? -8 : fill == 2 ? 7 : int8_t(uq(gen));
  p.packed.resize(size_t(n * kk / 2));
  k::pack_int4_weights(p.q.data(), n, kk, kk, p.packed.data());
  p.scales.resize(size_t(n * (kk / group)));
  for (auto& s : p.scales) s = exact ? std::ldexp(1.0f, ue(gen)) : us(gen);
  p.weight_sums.resize(size_t(n));
  k::int4_weight_sums(p.q.data(), n, kk, kk, p.scales.data(), group, p.weight_sums.data());
  p.bias.resize(size_t(n));
  for (auto& b : p.bias) b = exact ? std::ldexp(std::round(ub(gen) * 64), -6) : ub(gen);
  return p;
}

std::vector<float> run(k::GemmW4A8Fn gemm, const Problem& p, int32_t x_zero, bool with_bias) {
  std::vector<float> y(size_t(p.m * p.n), -7.0f);
  k::GemmW4A8Args a;
  a.x = p.x.data();
  a.m = p.m;
  a.n = p.n;
  a.k = p.kk;
  a.x_zero = x_zero;
  a.x_scale = 0.0625f;
  a.q = p.packed.data();
  a.scales = p.scales.data();
  a.weight_sums = p.weight_sums.data();
  a.group_size = p.group;
  a.bias = with_bias ? p.bias.data() : nullptr;
  a.y = y.data();
  gemm(a, 0, p.n);
  return y;
}

TEST(W4A8, WeightSumsAreTheScaledGroupSums) {
  std::mt19937 gen(3);
  const Problem p = make_problem(1, 5, 96, 32, gen, 0, true);
  for (int64_t r = 0; r < p.n; ++r) {
    double expected = 0;
    for (int64_t g = 0; g < 3; ++g) {
      int sum = 0;
      for (int64_t c = 32 * g; c < 32 * (g + 1); ++c) sum += p.q[size_t(r * 96 + c)];
      expected += double(p.scales[size_t(r * 3 + g)]) * sum;
    }
    EXPECT_EQ(double(p.weight_sums[size_t(r)]), expected) << "row " << r;
  }
}

TEST(W4A8, ReferenceEqualsAWrittenOutDoubleSum) {
  std::mt19937 gen(4);
  const Problem p = make_problem(3, 7, 128, 64, gen, 0, true);
  const auto got = run(&k::gemm_w4a8_reference, p, 37, true);
  for (int64_t m = 0; m < p.m; ++m) {
    for (int64_t n = 0; n < p.n; ++n) {
      double acc = 0;
      for (int64_t c = 0; c < p.kk; ++c) {
        acc += (double(p.x[size_t(m * p.kk + c)]) - 37) * p.q[size_t(n * p.kk + c)] * p.scales[size_t(n * 2 + c / 64)];
      }
      EXPECT_EQ(double(got[size_t(m * p.n + n)]), acc * 0.0625 + p.bias[size_t(n)]);
    }
  }
}

class W4A8Variant : public ::testing::TestWithParam<k::GemmW4A8Kernels> {};

TEST_P(W4A8Variant, MatchesTheReferenceExactlyOnRepresentableSums) {
  if (!k::isa_supported(GetParam().isa)) {
    GTEST_SKIP() << "this CPU cannot run the " << k::isa_name(GetParam().isa) << " W4A8 kernel; its test did not run";
  }
  std::mt19937 gen(0);
  int cases = 0;
  for (int64_t m : {1, 2, 3, 7, 8, 11, 17}) {  // from 8 rows: the unpacked-panel path
    for (int64_t n : {1, 3, 4, 5, 17, 33}) {
      for (int64_t kk : {32, 64, 96, 160, 256, 416}) {
        for (int64_t group : {32, 64, 96, 128, 160}) {
          if (kk % group) continue;
          for (int fill : {0, 1, 2}) {
            if (fill && (m + n) % 3) continue;  // extremes on a spread of shapes
            const Problem p = make_problem(m, n, kk, group, gen, fill, true);
            for (int32_t x_zero : {0, 1, 128, 255}) {
              const bool with_bias = (x_zero + n) % 2;
              const auto ref = run(&k::gemm_w4a8_reference, p, x_zero, with_bias);
              const auto got = run(GetParam().gemm, p, x_zero, with_bias);
              ASSERT_EQ(got, ref) << m << "x" << n << "x" << kk << " group " << group << " fill " << fill
                                  << " x_zero " << x_zero;
              ++cases;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 500);
}

TEST_P(W4A8Variant, MatchesTheReferenceToFloatRounding) {
  if (!k::isa_supported(GetParam().isa)) {
    GTEST_SKIP() << "this CPU cannot run the " << k::isa_name(GetParam().isa) << " W4A8 kernel; its test did not run";
  }
  std::mt19937 gen(1);
  for (int64_t kk : {64, 1024, 4096}) {
    for (int64_t group : {32, 64}) {
      const Problem p = make_problem(kk == 1024 ? 19 : 2, 9, kk, group, gen, 0, false);
      const auto ref = run(&k::gemm_w4a8_reference, p, 131, true);
      const auto got = run(GetParam().gemm, p, 131, true);
      // Both sum the same exact group integers; only the float sums over
      // groups (and the zero point's) are ordered differently.
      double scale = 0;
      for (float v : ref) scale = std::max(scale, double(std::abs(v)));
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-5 * (1 + scale)) << kk << " " << group;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, W4A8Variant, ::testing::ValuesIn(k::gemm_w4a8_variants()),
                         [](const ::testing::TestParamInfo<k::GemmW4A8Kernels>& info) {
                           return std::string(k::isa_name(info.param.isa));
                         });

}  // namespace
