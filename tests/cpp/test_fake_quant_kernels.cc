// Every compiled fake-quant variant against the scalar reference, bit for bit:
// sizes that hit vector tails, every granularity and dtype, ranges split as
// the thread pool splits them, and boundary values. A variant this CPU cannot
// run is skipped with a message, never silently passed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/half_float.h"

namespace k = torchqat::kernels;

namespace torchqat::kernels {
// Readable parameter names in test listings.
void PrintTo(const FakeQuantKernels& v, std::ostream* os) { *os << isa_name(v.isa); }
void PrintTo(Fp8Format f, std::ostream* os) { *os << (f == Fp8Format::kE4M3 ? "e4m3" : "e5m2"); }
}  // namespace torchqat::kernels

namespace {

const int64_t kSizes[] = {1, 2, 5, 8, 9, 16, 17, 31, 32, 33, 1000003};

const k::FakeQuantKernels& reference() { return k::fake_quant_variants().front(); }

std::string variant_name(const ::testing::TestParamInfo<k::FakeQuantKernels>& info) {
  return k::isa_name(info.param.isa);
}

// Inputs as raw element bits of the given dtype.
struct Buffer {
  k::DType dtype;
  std::vector<uint8_t> bytes;
  Buffer(k::DType t, int64_t n) : dtype(t), bytes(size_t(n) * k::element_size(t)) {}
  void set(int64_t i, float v) {
    if (dtype == k::DType::kFloat32) {
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = dtype == k::DType::kFloat16 ? k::float_to_half(v) : k::float_to_bfloat16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  // Bits of element i (NaNs compared as "is NaN", whatever the payload).
  uint32_t bits(int64_t i) const {
    if (dtype == k::DType::kFloat32) {
      uint32_t u;
      std::memcpy(&u, bytes.data() + 4 * i, 4);
      return (u & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : u;
    }
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    const uint16_t exp_mask = dtype == k::DType::kFloat16 ? 0x7c00 : 0x7f80;
    const bool nan = (h & exp_mask) == exp_mask && (h & ~exp_mask & 0x7fff) != 0;
    return nan ? 0xffffu : h;
  }
  int64_t size() const { return int64_t(bytes.size() / k::element_size(dtype)); }
};

// Values that exercise rounding and clamping for quantization step `scale`:
// exact .5 ties, the range ends and one step past them, +-0, +-Inf, NaN,
// denormals, and random values spread over twice the range.
std::vector<float> test_values(int64_t n, float scale, float zp, float qmin, float qmax,
                               std::mt19937& rng) {
  std::vector<float> special = {
      0.0f, -0.0f, INFINITY, -INFINITY, NAN, std::numeric_limits<float>::denorm_min(),
      -std::numeric_limits<float>::denorm_min(), 1e-40f, (qmin - zp) * scale,
      (qmax - zp) * scale, (qmin - zp - 1) * scale, (qmax - zp + 1) * scale,
      std::nextafter((qmax - zp) * scale, INFINITY), (qmax - zp + 0.5f) * scale,
      (qmin - zp - 0.5f) * scale, 0.5f * scale, -0.5f * scale, 1.5f * scale, -2.5f * scale};
  std::uniform_real_distribution<float> wide(2 * (qmin - zp) * scale, 2 * (qmax - zp) * scale);
  std::uniform_int_distribution<int> tie(int(qmin) - 3, int(qmax) + 3);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int pick = int(rng() % 8);
    if (pick == 0) {
      v[size_t(i)] = special[rng() % special.size()];
    } else if (pick == 1) {
      v[size_t(i)] = (float(tie(rng)) + 0.5f) * scale;  // exact .5 tie (scale a power of two)
    } else {
      v[size_t(i)] = wide(rng);
    }
  }
  return v;
}

struct Case {
  k::ChannelLayout layout;
  int64_t numel;
};

// Per-tensor, per-channel with several inner sizes (1 = last axis), per-group.
std::vector<Case> layouts_for(int64_t n) {
  std::vector<Case> cases = {{{1, n}, n}};
  for (int64_t inner : {1, 3, 8, 13, 64}) {
    if (n % inner == 0 && n / inner >= 1) {
      const int64_t outer_channels = n / inner;
      for (int64_t channels : {int64_t{1}, int64_t{2}, int64_t{3}, outer_channels}) {
        if (outer_channels % channels == 0) cases.push_back({{channels, inner}, n});
      }
    }
  }
  return cases;
}

class FakeQuantVariant : public ::testing::TestWithParam<k::FakeQuantKernels> {
 protected:
  void SetUp() override {
    if (!k::isa_supported(GetParam().isa)) {
      GTEST_SKIP() << "this CPU cannot run the " << k::isa_name(GetParam().isa)
                   << " kernels; their parity test did not run";
    }
  }
};

// Every byte a kernel must write is poisoned; the last one is zeroed as the
// ops do, since kernels leave the bits past `end` as they find them.
std::vector<uint8_t> poisoned_mask(int64_t n) {
  std::vector<uint8_t> m(size_t(k::mask_bytes(n)), 0xa5);
  m.back() = 0;
  return m;
}

// Runs `fn` over [0, n) in pieces split at a byte boundary, as at::parallel_for does.
template <class Fn>
void run_split(int64_t n, int64_t split, const Fn& fn) {
  const int64_t mid = std::min(n, split / 8 * 8);
  fn(0, mid);
  fn(mid, n);
}

void expect_same(const Buffer& a, const Buffer& b, const std::vector<uint8_t>& ma,
                 const std::vector<uint8_t>& mb, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (int64_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a.bits(i), b.bits(i)) << what << ": element " << i;
  }
  for (size_t i = 0; i < ma.size(); ++i) {
    ASSERT_EQ(ma[i], mb[i]) << what << ": mask byte " << i;
  }
}

TEST_P(FakeQuantVariant, AffineMatchesReference) {
  std::mt19937 rng(1234);
  const float qmins[] = {-128, 0, -8, -2};
  const float qmaxs[] = {127, 255, 7, 1};
  for (int64_t n : kSizes) {
    for (const auto& c : layouts_for(n)) {
      if (n > 1000 && c.layout.channels > 64 && c.layout.inner < 8) continue;  // keep it quick
      const int r = int(rng() % 4);
      std::vector<float> scale(size_t(c.layout.channels)), zp(size_t(c.layout.channels));
      for (auto& s : scale) s = std::ldexp(1.0f, int(rng() % 12) - 8);  // powers of two: exact ties
      for (auto& z : zp) z = std::floor(qmins[r] + float(rng() % uint32_t(qmaxs[r] - qmins[r] + 1)));
      // Non-power-of-two scales too: products then round, and must round the same.
      if (c.layout.channels > 1 || rng() % 2) scale.back() *= 1.37f;
      const k::AffineArgs args{scale.data(), zp.data(), qmins[r], qmaxs[r], c.layout};
      for (auto dtype : {k::DType::kFloat32, k::DType::kFloat16, k::DType::kBFloat16}) {
        Buffer x(dtype, n), want(dtype, n), got(dtype, n);
        const auto values = test_values(n, scale[0], zp[0], qmins[r], qmaxs[r], rng);
        for (int64_t i = 0; i < n; ++i) x.set(i, values[size_t(i)]);
        std::vector<uint8_t> want_mask(size_t(k::mask_bytes(n))), got_mask = poisoned_mask(n);
        reference().affine(args, dtype, x.bytes.data(), want.bytes.data(), want_mask.data(), 0, n);
        run_split(n, int64_t(rng() % uint32_t(n + 1)), [&](int64_t b, int64_t e) {
          GetParam().affine(args, dtype, x.bytes.data(), got.bytes.data(), got_mask.data(), b, e);
        });
        expect_same(want, got, want_mask, got_mask,
                    "n=" + std::to_string(n) + " channels=" + std::to_string(c.layout.channels) +
                        " inner=" + std::to_string(c.layout.inner) +
                        " dtype=" + std::to_string(int(dtype)));
      }
    }
  }
}

TEST_P(FakeQuantVariant, Fp8MatchesReference) {
  std::mt19937 rng(99);
  for (auto fmt : {k::Fp8Format::kE4M3, k::Fp8Format::kE5M2}) {
    const float max_finite = k::fp8_spec(fmt).max_finite;
    for (int64_t n : kSizes) {
      for (const auto& c : layouts_for(n)) {
        if (n > 1000 && c.layout.channels > 64 && c.layout.inner < 8) continue;
        std::vector<float> scale(size_t(c.layout.channels));
        for (auto& s : scale) s = std::ldexp(1.0f + float(rng() % 100) / 100.0f, int(rng() % 8) - 4);
        const k::Fp8Args args{scale.data(), fmt, c.layout};
        for (auto dtype : {k::DType::kFloat32, k::DType::kFloat16, k::DType::kBFloat16}) {
          Buffer x(dtype, n), want(dtype, n), got(dtype, n);
          // Spread over many binades, subnormals of the format and saturation included.
          std::uniform_real_distribution<float> exponent(-20.0f, std::log2(max_finite) + 2.0f);
          for (int64_t i = 0; i < n; ++i) {
            const float sign = (rng() & 1) ? -1.0f : 1.0f;
            const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, max_finite * scale[0]};
            x.set(i, (rng() % 16 == 0) ? special[rng() % 6] : sign * std::exp2(exponent(rng)));
          }
          std::vector<uint8_t> want_mask(size_t(k::mask_bytes(n))), got_mask = poisoned_mask(n);
          reference().fp8(args, dtype, x.bytes.data(), want.bytes.data(), want_mask.data(), 0, n);
          run_split(n, int64_t(rng() % uint32_t(n + 1)), [&](int64_t b, int64_t e) {
            GetParam().fp8(args, dtype, x.bytes.data(), got.bytes.data(), got_mask.data(), b, e);
          });
          expect_same(want, got, want_mask, got_mask,
                      "fp8 n=" + std::to_string(n) + " inner=" + std::to_string(c.layout.inner));
        }
      }
    }
  }
}

TEST_P(FakeQuantVariant, MaskedGradMatchesReference) {
  std::mt19937 rng(5);
  for (int64_t n : kSizes) {
    std::vector<uint8_t> mask(size_t(k::mask_bytes(n)));
    for (auto& b : mask) b = uint8_t(rng());
    for (size_t elem : {size_t{4}, size_t{2}}) {
      std::vector<uint8_t> g(size_t(n) * elem), want(g.size(), 0x11), got(g.size(), 0x22);
      for (auto& b : g) b = uint8_t(rng() | 1);  // no zero elements: a kept value is visible
      reference().masked_grad(elem, g.data(), mask.data(), want.data(), 0, n);
      run_split(n, int64_t(rng() % uint32_t(n + 1)), [&](int64_t b, int64_t e) {
        GetParam().masked_grad(elem, g.data(), mask.data(), got.data(), b, e);
      });
      ASSERT_EQ(want, got) << "n=" << n << " elem=" << elem;
      // And the reference does what it says: kept where the bit is set, +0 elsewhere.
      for (int64_t i = 0; i < n; ++i) {
        const bool keep = (mask[size_t(i / 8)] >> (i % 8)) & 1;
        for (size_t byte = 0; byte < elem; ++byte) {
          ASSERT_EQ(want[size_t(i) * elem + byte], keep ? g[size_t(i) * elem + byte] : 0);
        }
      }
    }
  }
}

// Sums of many terms: equal to the double reference up to float32 lane accumulation.
void expect_sums_close(const std::vector<double>& want, const std::vector<double>& got,
                       double magnitude, const std::string& what) {
  for (size_t c = 0; c < want.size(); ++c) {
    ASSERT_NEAR(want[c], got[c], 1e-6 * magnitude + 1e-9) << what << ": channel " << c;
  }
}

TEST_P(FakeQuantVariant, LsqBackwardMatchesReference) {
  std::mt19937 rng(77);
  for (int64_t n : kSizes) {
    for (const auto& c : layouts_for(n)) {
      if (n > 1000 && c.layout.channels > 64 && c.layout.inner < 8) continue;
      const int64_t channels = c.layout.channels;
      std::vector<float> scale(static_cast<size_t>(channels)), zp(static_cast<size_t>(channels));
      for (auto& s : scale) s = std::ldexp(1.0f, int(rng() % 6) - 6) * ((rng() & 1) ? 1.0f : 1.37f);
      for (auto& z : zp) z = float(int(rng() % 7) - 3);
      const k::AffineArgs args{scale.data(), zp.data(), -8.0f, 7.0f, c.layout};
      const int64_t outer = n / (channels * c.layout.inner);
      for (auto dtype : {k::DType::kFloat32, k::DType::kFloat16, k::DType::kBFloat16}) {
        Buffer x(dtype, n), g(dtype, n), want(dtype, n), got(dtype, n), got2(dtype, n);
        const auto values = test_values(n, scale[0], zp[0], -8.0f, 7.0f, rng);
        std::normal_distribution<float> normal;
        double magnitude = 0;
        for (int64_t i = 0; i < n; ++i) {
          x.set(i, values[size_t(i)]);
          const float gi = normal(rng);
          g.set(i, gi);
          magnitude += std::fabs(gi) * 16.0;
        }
        const auto zeros = [&] { return std::vector<double>(size_t(channels), 0.0); };
        auto ws = zeros(), wo = zeros(), rs = zeros(), ro = zeros(), cs = zeros(), co = zeros();
        reference().lsq_backward_range(args, dtype, x.bytes.data(), g.bytes.data(),
                                       want.bytes.data(), {ws.data(), wo.data()}, 0, n);
        // Range form, split as the CPU op splits into tiles.
        run_split(n, int64_t(rng() % uint32_t(n + 1)), [&](int64_t b, int64_t e) {
          GetParam().lsq_backward_range(args, dtype, x.bytes.data(), g.bytes.data(),
                                        got.bytes.data(), {rs.data(), ro.data()}, b, e);
        });
        // Channel form, channels split in two.
        const int64_t mid = channels / 2;
        for (auto [cb, ce] : {std::pair{int64_t{0}, mid}, std::pair{mid, channels}}) {
          GetParam().lsq_backward_channels(args, dtype, x.bytes.data(), g.bytes.data(),
                                           got2.bytes.data(), {cs.data(), co.data()}, outer, cb, ce);
        }
        const std::string what = "lsq n=" + std::to_string(n) + " channels=" +
                                 std::to_string(channels) + " inner=" + std::to_string(c.layout.inner);
        std::vector<uint8_t> no_mask;
        expect_same(want, got, no_mask, no_mask, what + " (range)");
        expect_same(want, got2, no_mask, no_mask, what + " (channels)");
        expect_sums_close(ws, rs, magnitude, what + " scale sum (range)");
        expect_sums_close(wo, ro, magnitude, what + " outside sum (range)");
        expect_sums_close(ws, cs, magnitude, what + " scale sum (channels)");
        expect_sums_close(wo, co, magnitude, what + " outside sum (channels)");
      }
    }
  }
}

TEST(LsqReference, TermsFollowTheWrittenOutFormulas) {
  // scale 0.5, zero point 2, range [-8, 7]: q = round(2x) + 2.
  const auto p = k::make_affine_params<k::ScalarOps>(0.5f, 2.0f, -8.0f, 7.0f);
  const auto inside = k::lsq_backward_terms<k::ScalarOps>(1.3f, 2.0f, p);  // v = 2.6, r = 3, q = 5
  EXPECT_EQ(inside.grad_x, 2.0f);
  EXPECT_FLOAT_EQ(inside.scale_term, 2.0f * (3.0f - 2.6f));
  EXPECT_EQ(inside.outside_grad, 0.0f);
  const auto above = k::lsq_backward_terms<k::ScalarOps>(3.0f, 2.0f, p);  // q = 8 > 7
  EXPECT_EQ(above.grad_x, 0.0f);
  EXPECT_EQ(above.scale_term, 2.0f * (7.0f - 2.0f));
  EXPECT_EQ(above.outside_grad, 2.0f);
  const auto below = k::lsq_backward_terms<k::ScalarOps>(-6.0f, -1.0f, p);  // q = -10 < -8
  EXPECT_EQ(below.scale_term, -1.0f * (-8.0f - 2.0f));
  EXPECT_EQ(below.outside_grad, -1.0f);
  const auto nan = k::lsq_backward_terms<k::ScalarOps>(NAN, 1.0f, p);
  EXPECT_EQ(nan.grad_x, 0.0f);
  EXPECT_EQ(nan.scale_term, 0.0f);
  EXPECT_EQ(nan.outside_grad, 0.0f);
}

INSTANTIATE_TEST_SUITE_P(AllVariants, FakeQuantVariant,
                         ::testing::ValuesIn(k::fake_quant_variants()), variant_name);

TEST(Dispatch, PicksASupportedVariantAndHonoursSetIsa) {
  EXPECT_TRUE(k::isa_supported(k::active_isa()));
  k::set_isa("scalar");
  EXPECT_EQ(k::active_isa(), k::Isa::kScalar);
  EXPECT_THROW(k::set_isa("sse9"), std::invalid_argument);
  for (const auto& v : k::fake_quant_variants()) {
    if (!k::isa_supported(v.isa)) EXPECT_THROW(k::set_isa(k::isa_name(v.isa)), std::invalid_argument);
  }
}

}  // namespace
