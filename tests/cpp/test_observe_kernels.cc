// Every compiled observer variant against the scalar reference: the min/max
// and non-finite counts are exact, whatever the split.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "torchqat/kernels/half_float.h"
#include "torchqat/kernels/observe.h"

namespace k = torchqat::kernels;

namespace torchqat::kernels {
void PrintTo(const ObserverKernels& v, std::ostream* os) { *os << isa_name(v.isa); }
}  // namespace torchqat::kernels

namespace {

class ObserverVariant : public ::testing::TestWithParam<k::ObserverKernels> {
 protected:
  void SetUp() override {
    if (!k::isa_supported(GetParam().isa)) {
      GTEST_SKIP() << "this CPU cannot run the " << k::isa_name(GetParam().isa)
                   << " kernels; their parity test did not run";
    }
  }
};

struct Stats {
  std::vector<float> lo, hi;
  std::vector<int64_t> bad;
  explicit Stats(int64_t c)
      : lo(size_t(c), INFINITY), hi(size_t(c), -INFINITY), bad(size_t(c), 0) {}
  k::MinMaxState state() { return {lo.data(), hi.data(), bad.data()}; }
};

TEST_P(ObserverVariant, MinMaxMatchesReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const float special[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, 3e38f, -3e38f};
  for (int64_t n : {1, 2, 5, 8, 9, 16, 17, 31, 32, 33, 1000003}) {
    for (auto [channels, inner] : {std::pair<int64_t, int64_t>{1, n}, {n, 1}, {1, 1}, {3, 1}}) {
      if (n % (channels * inner) != 0) continue;
      const k::ChannelLayout layout{channels, inner};
      const int64_t outer = n / (channels * inner);
      for (auto dtype : {k::DType::kFloat32, k::DType::kFloat16, k::DType::kBFloat16}) {
        std::vector<uint8_t> x(size_t(n) * k::element_size(dtype));
        for (int64_t i = 0; i < n; ++i) {
          const float v = rng() % 10 == 0 ? special[rng() % 8] : normal(rng);
          if (dtype == k::DType::kFloat32) {
            reinterpret_cast<float*>(x.data())[i] = v;
          } else {
            reinterpret_cast<uint16_t*>(x.data())[i] =
                dtype == k::DType::kFloat16 ? k::float_to_half(v) : k::float_to_bfloat16(v);
          }
        }
        Stats want(channels), by_range(channels), by_channel(channels);
        k::observer_variants().front().minmax_range(dtype, x.data(), layout, want.state(), 0, n);
        const int64_t split = int64_t(rng() % uint32_t(n + 1));
        GetParam().minmax_range(dtype, x.data(), layout, by_range.state(), 0, split);
        GetParam().minmax_range(dtype, x.data(), layout, by_range.state(), split, n);
        const int64_t mid = channels / 2;
        GetParam().minmax_channels(dtype, x.data(), layout, by_channel.state(), outer, 0, mid);
        GetParam().minmax_channels(dtype, x.data(), layout, by_channel.state(), outer, mid, channels);
        const std::string what = "n=" + std::to_string(n) + " channels=" + std::to_string(channels);
        for (const Stats* got : {&by_range, &by_channel}) {
          EXPECT_EQ(got->lo, want.lo) << what;
          EXPECT_EQ(got->hi, want.hi) << what;
          EXPECT_EQ(got->bad, want.bad) << what;
        }
      }
    }
  }
}

TEST_P(ObserverVariant, HistogramAddMatchesReference) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const float special[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -6.0f, 6.0f};
  for (int64_t n : {1, 2, 5, 8, 9, 16, 17, 31, 32, 33, 1000003}) {
    for (auto dtype : {k::DType::kFloat32, k::DType::kFloat16, k::DType::kBFloat16}) {
      std::vector<float> v(static_cast<size_t>(n));
      for (auto& e : v) e = rng() % 8 == 0 ? special[rng() % 8] : std::clamp(normal(rng), -6.0f, 6.0f);
      std::vector<uint8_t> x(size_t(n) * k::element_size(dtype));
      for (int64_t i = 0; i < n; ++i) {
        if (dtype == k::DType::kFloat32) {
          reinterpret_cast<float*>(x.data())[i] = v[size_t(i)];
        } else {
          reinterpret_cast<uint16_t*>(x.data())[i] = dtype == k::DType::kFloat16
                                                          ? k::float_to_half(v[size_t(i)])
                                                          : k::float_to_bfloat16(v[size_t(i)]);
        }
      }
      for (int64_t bins : {2, 7, 2048}) {
        std::vector<int64_t> want(size_t(bins), 0), got(size_t(bins), 0);
        const int64_t want_bad = k::observer_variants().front().histogram_add(
            dtype, x.data(), 0, n, want.data(), bins, -6.0, 6.5);
        const int64_t split = int64_t(rng() % uint32_t(n + 1));
        const int64_t got_bad =
            GetParam().histogram_add(dtype, x.data(), 0, split, got.data(), bins, -6.0, 6.5) +
            GetParam().histogram_add(dtype, x.data(), split, n, got.data(), bins, -6.0, 6.5);
        EXPECT_EQ(got, want) << "n=" << n << " bins=" << bins;
        EXPECT_EQ(got_bad, want_bad) << "n=" << n << " bins=" << bins;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, ObserverVariant, ::testing::ValuesIn(k::observer_variants()),
                         [](const auto& info) { return std::string(k::isa_name(info.param.isa)); });

TEST(MinMaxReference, SkipsAndCountsNonFinite) {
  const float x[] = {1.0f, NAN, -2.0f, INFINITY, 3.0f, -INFINITY};
  Stats s(1);
  k::observer_variants().front().minmax_range(k::DType::kFloat32, x, {1, 6}, s.state(), 0, 6);
  EXPECT_EQ(s.lo[0], -2.0f);
  EXPECT_EQ(s.hi[0], 3.0f);
  EXPECT_EQ(s.bad[0], 3);
}

}  // namespace
