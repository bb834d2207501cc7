// INT8 GEMM: every variant bit-exact against the scalar reference, and the
// reference against a plain int64 sum over the unpacked weights, on odd
// shapes, extreme values and every epilogue.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <vector>

#include "torchqat/kernels/cpu_features.h"
#include "torchqat/kernels/gemm_int8.h"

namespace k = torchqat::kernels;

namespace {

const std::vector<int64_t> kSizes = {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 100, 257};

struct Problem {
  int64_t m, n, k;
  std::vector<uint8_t> a;
  std::vector<int8_t> b;
  std::optional<k::PackedInt8Weights> packed;
  std::vector<float> multiplier, bias;
};

// What fills a and b. The AVX2 GEMM takes its vpmaddubsw path on blocks of
// rows whose activations are all below 128, so 7-bit data, its extremes and a
// matrix whose upper rows are 7-bit and lower rows are not test that path and
// the switch between the two; 7-bit extremes but for 255 in the last two
// columns of row 0 (whose pair saturates vpmaddubsw against -128 weights)
// test that a block with one wide value is not taken for 7-bit.
enum Fill { kRandom, kExtremes, kZeros, kRandom7Bit, kExtremes7Bit, kHalf7Bit, kOneWide };

uint8_t activation(Fill fill, int64_t m, int64_t k, int64_t row, int64_t col, std::mt19937& gen) {
  std::uniform_int_distribution<int> wide(0, 255), narrow(0, 127);
  switch (fill) {
    case kExtremes: return 255;
    case kZeros: return 0;
    case kExtremes7Bit: return 127;
    case kOneWide: return row == 0 && col >= k - 2 ? 255 : 127;
    case kRandom7Bit: return uint8_t(narrow(gen));
    case kHalf7Bit: return uint8_t(row < m / 2 ? narrow(gen) : wide(gen));
    default: return uint8_t(wide(gen));
  }
}

int8_t weight(Fill fill, int64_t n, std::mt19937& gen) {
  std::uniform_int_distribution<int> any(-128, 127);
  switch (fill) {
    case kExtremes:
    case kOneWide: return -128;
    case kZeros: return 0;
    case kExtremes7Bit: return int8_t(n % 2 ? 127 : -128);  // the largest pair sums of either sign
    default: return int8_t(any(gen));
  }
}

Problem make_problem(int64_t m, int64_t n, int64_t kk, std::mt19937& gen, Fill fill) {
  Problem p{m, n, kk, {}, {}, std::nullopt, {}, {}};
  std::uniform_real_distribution<float> uf(1e-4f, 1e-2f), ubias(-3.0f, 3.0f);
  for (int64_t i = 0; i < m * kk; ++i) p.a.push_back(activation(fill, m, kk, i / kk, i % kk, gen));
  for (int64_t i = 0; i < n * kk; ++i) p.b.push_back(weight(fill, i / kk, gen));
  p.packed.emplace(p.b.data(), n, kk, kk);
  for (int64_t i = 0; i < n; ++i) {
    p.multiplier.push_back(uf(gen));
    p.bias.push_back(ubias(gen));
  }
  return p;
}

template <class T>
std::vector<T> run(const k::GemmInt8Kernels& kernels, const Problem& p, k::GemmInt8Args args) {
  std::vector<T> out(size_t(p.m * p.n), T(7));
  args.a = p.a.data();
  args.lda = p.k;
  args.b = p.packed->view();
  args.m = p.m;
  args.multiplier = p.multiplier.data();
  args.out = out.data();
  args.ldc = p.n;
  kernels.gemm(args, 0, p.m, 0, args.b.panels());
  return out;
}

class GemmVariant : public ::testing::TestWithParam<k::GemmInt8Kernels> {};

TEST_P(GemmVariant, MatchesTheReferenceOnOddShapesAndExtremes) {
  if (!k::isa_supported(GetParam().isa)) {
    GTEST_SKIP() << "this CPU cannot run the " << k::isa_name(GetParam().isa) << " GEMM; its parity test did not run";
  }
  const auto& ref = k::gemm_int8_variants().front();
  std::mt19937 gen(0);
  int cases = 0;
  for (int64_t m : kSizes) {
    for (int64_t n : kSizes) {
      for (int64_t kk : kSizes) {
        if (m * n * kk > (int64_t{1} << 21)) continue;
        for (Fill fill : {kRandom, kRandom7Bit, kExtremes, kZeros, kExtremes7Bit, kHalf7Bit, kOneWide}) {
          // Random data on every shape, the other fills on a spread of shapes.
          if (fill != kRandom && fill != kRandom7Bit && (m + n + kk) % 5 != 0) continue;
          const Problem p = make_problem(m, n, kk, gen, fill);
          for (int32_t a_zero : {0, 128, 255}) {
            k::GemmInt8Args args;
            args.a_zero = a_zero;
            const auto got = run<int32_t>(GetParam(), p, args);
            ASSERT_EQ(got, run<int32_t>(ref, p, args)) << m << "x" << n << "x" << kk << " zero " << a_zero;
            if (GetParam().isa == k::Isa::kScalar) {  // the reference against a plain sum
              for (int64_t i = 0; i < m; ++i) {
                for (int64_t j = 0; j < n; ++j) {
                  int64_t s = 0;
                  for (int64_t t = 0; t < kk; ++t) s += (int64_t(p.a[size_t(i * kk + t)]) - a_zero) * p.b[size_t(j * kk + t)];
                  ASSERT_EQ(got[size_t(i * n + j)], s);
                }
              }
            }
          }
          for (bool relu : {false, true}) {
            k::GemmInt8Args args;
            args.a_zero = 3;
            args.relu = relu;
            args.bias = relu ? p.bias.data() : nullptr;
            args.output = k::GemmOutput::kFloat;
            ASSERT_EQ(run<float>(GetParam(), p, args), run<float>(ref, p, args));
            args.output = k::GemmOutput::kUint8;
            args.inv_out_scale = 1.0f / 0.05f;
            args.out_zero = relu ? 0 : 117;
            ASSERT_EQ(run<uint8_t>(GetParam(), p, args), run<uint8_t>(ref, p, args));
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 1000);
}

// Long K (odd and even numbers of pairs, a last quad of one pair) and row
// blocks with a short tail, on full-range and 7-bit activations.
TEST_P(GemmVariant, MatchesTheReferenceOnLongK) {
  if (!k::isa_supported(GetParam().isa)) {
    GTEST_SKIP() << "this CPU cannot run the " << k::isa_name(GetParam().isa) << " GEMM; its parity test did not run";
  }
  const auto& ref = k::gemm_int8_variants().front();
  std::mt19937 gen(1);
  for (int64_t kk : {511, 512, 513, 514, 1025, 2305}) {
    for (int64_t m : {1, 7, 61, 130}) {
      for (int64_t n : {17, 33}) {
        for (Fill fill : {kRandom, kExtremes, kRandom7Bit, kExtremes7Bit, kHalf7Bit, kOneWide}) {
          const Problem p = make_problem(m, n, kk, gen, fill);
          k::GemmInt8Args args;
          args.a_zero = fill == kRandom || fill == kRandom7Bit || fill == kHalf7Bit ? 101 : 0;
          ASSERT_EQ(run<int32_t>(GetParam(), p, args), run<int32_t>(ref, p, args)) << m << "x" << n << "x" << kk;
          args.output = k::GemmOutput::kUint8;
          args.bias = p.bias.data();
          args.inv_out_scale = 1.0f / 4.0f;
          args.out_zero = 60;
          ASSERT_EQ(run<uint8_t>(GetParam(), p, args), run<uint8_t>(ref, p, args)) << m << "x" << n << "x" << kk;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, GemmVariant, ::testing::ValuesIn(k::gemm_int8_variants()),
                         [](const auto& info) { return std::string(k::isa_name(info.param.isa)); });

// The VNNI GEMM is listed (and so tested above) only where the CPU has VNNI.
TEST(GemmVnni, ListedExactlyWhereTheCpuHasIt) {
  const auto& variants = k::gemm_int8_variants();
  const bool listed = std::any_of(variants.begin(), variants.end(),
                                  [](const k::GemmInt8Kernels& v) { return v.isa == k::Isa::kAvx512; });
  EXPECT_EQ(listed, k::cpu_features().avx512_vnni);
  if (!listed) GTEST_SKIP() << "this CPU has no AVX-512 VNNI: the VNNI GEMM's parity test did not run";
}

TEST(GemmEpilogue, RequantizesHalfToEvenAndSaturates) {
  const std::vector<int8_t> one = {1};
  const k::PackedInt8Weights b(one.data(), 1, 1, 1);
  const float multiplier = 1.0f;
  for (auto [acc_in, expected] : std::vector<std::pair<int, int>>{{5, 2}, {7, 4}, {-3, 0}, {600, 255}, {3, 2}}) {
    // acc = a - 0 with a = acc_in: v = acc, q = round_half_even(v / 2) + 0
    const uint8_t a = uint8_t(std::max(acc_in, 0) > 255 ? 255 : std::max(acc_in, 0));
    k::GemmInt8Args args;
    args.a = &a;
    args.lda = 1;
    args.a_zero = acc_in < 0 ? 3 : (acc_in > 255 ? -345 : 0);
    args.b = b.view();
    args.m = 1;
    args.output = k::GemmOutput::kUint8;
    args.multiplier = &multiplier;
    args.inv_out_scale = 0.5f;
    uint8_t out = 0;
    args.out = &out;
    args.ldc = 1;
    k::gemm_int8_reference(args, 0, 1, 0, 1);
    EXPECT_EQ(int(out), expected) << acc_in;
  }
}

}  // namespace

#include "torchqat/kernels/gemv_int4.h"

namespace {

TEST(GemvInt4, PackingRoundTripsAndVariantsAgreeWithTheReference) {
  std::mt19937 gen(1);
  std::uniform_int_distribution<int> uq(-8, 7);
  std::uniform_real_distribution<float> ux(-2.0f, 2.0f), us(0.01f, 0.1f);
  for (int64_t n : {1, 3, 4, 5, 17, 64}) {
    for (int64_t kk : {32, 64, 256}) {
      for (int64_t group : {32, 64, 128}) {
        if (kk % group) continue;
        std::vector<int8_t> q(size_t(n * kk));
        for (auto& v : q) v = int8_t(uq(gen));
        std::vector<uint8_t> packed(size_t(n * kk / 2));
        k::pack_int4_weights(q.data(), n, kk, kk, packed.data());
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t c = 0; c < kk; ++c) ASSERT_EQ(k::int4_at(packed.data() + r * kk / 2, c), q[size_t(r * kk + c)]);
        }
        std::vector<float> x(size_t(2 * kk)), scales(size_t(n * kk / group)), ref(size_t(2 * n)), got(ref.size());
        for (auto& v : x) v = ux(gen);
        for (auto& v : scales) v = us(gen);
        k::GemvInt4Args args;
        args.x = x.data();
        args.m = 2;
        args.n = n;
        args.k = kk;
        args.q = packed.data();
        args.scales = scales.data();
        args.group_size = group;
        args.y = ref.data();
        k::gemv_int4_reference(args, 0, n);
        for (const auto& v : k::gemv_int4_variants()) {
          if (!k::isa_supported(v.isa)) continue;  // the pytest parametrisations report skips
          args.y = got.data();
          v.gemv(args, 0, n);
          for (size_t i = 0; i < ref.size(); ++i) {
            ASSERT_NEAR(got[i], ref[i], 1e-4f * (1.0f + std::abs(ref[i]))) << k::isa_name(v.isa) << " " << n << "x" << kk;
          }
        }
      }
    }
  }
}

}  // namespace
