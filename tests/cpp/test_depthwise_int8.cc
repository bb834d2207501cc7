// INT8 depthwise Conv2d: every variant bit-exact against the scalar
// reference, and the reference against the definition written out over the
// unpacked weights (padding contributing nothing), on odd channel counts,
// kernels, strides, padding and dilation, extreme values and every epilogue.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "torchqat/kernels/cpu_features.h"
#include "torchqat/kernels/depthwise_int8.h"

namespace k = torchqat::kernels;

namespace {

struct Geometry {
  int64_t batch, size, channels, kernel, stride, pad, dilation;
};

struct Problem {
  Geometry g;
  int64_t out;
  std::vector<uint8_t> x;
  std::vector<int8_t> w, packed;
  std::vector<int32_t> sums;
  std::vector<float> multiplier, bias;
};

Problem make_problem(const Geometry& g, std::mt19937& gen, int fill) {
  Problem p{g, (g.size + 2 * g.pad - g.dilation * (g.kernel - 1) - 1) / g.stride + 1, {}, {}, {}, {}, {}, {}};
  std::uniform_int_distribution<int> ux(0, 255), uw(-128, 127);
  std::uniform_real_distribution<float> uf(1e-4f, 1e-2f), ubias(-3.0f, 3.0f);
  const int64_t taps = g.kernel * g.kernel;
  p.x.resize(size_t(g.batch * g.size * g.size * g.channels));
  p.w.resize(size_t(g.channels * taps));
  for (auto& v : p.x) v = uint8_t(fill == 1 ? 255 : fill == 2 ? 0 : ux(gen));
  for (auto& v : p.w) v = int8_t(fill == 1 ? -128 : fill == 2 ? 0 : uw(gen));
  p.packed.resize(size_t(k::depthwise_packed_bytes(g.channels, taps)));
  p.sums.resize(size_t(g.channels));
  k::pack_depthwise_int8_weights(p.w.data(), g.channels, taps, p.packed.data(), p.sums.data());
  for (int64_t c = 0; c < g.channels; ++c) {
    p.multiplier.push_back(uf(gen));
    p.bias.push_back(ubias(gen));
  }
  return p;
}

k::DepthwiseInt8Args make_args(const Problem& p, int32_t x_zero) {
  const Geometry& g = p.g;
  k::DepthwiseInt8Args args;
  args.x = p.x.data();
  args.batch = g.batch;
  args.height = args.width = g.size;
  args.channels = g.channels;
  args.kernel_h = args.kernel_w = g.kernel;
  args.stride_h = args.stride_w = g.stride;
  args.pad_h = args.pad_w = g.pad;
  args.dilation_h = args.dilation_w = g.dilation;
  args.out_h = args.out_w = p.out;
  args.weights = p.packed.data();
  args.epilogue.a_zero = x_zero;
  args.epilogue.b.col_sums = p.sums.data();
  args.epilogue.b.n = g.channels;
  args.epilogue.multiplier = p.multiplier.data();
  args.epilogue.ldc = g.channels;
  return args;
}

template <class T>
std::vector<T> run(const k::DepthwiseInt8Kernels& kernels, const Problem& p, k::DepthwiseInt8Args args) {
  std::vector<T> out(size_t(p.g.batch * p.out * p.out * p.g.channels), T(7));
  args.epilogue.out = out.data();
  kernels.conv(args, 0, p.g.batch * p.out);
  return out;
}

// sum over the taps inside the input of (x - x_zero) * w, from the unpacked weights.
int64_t definition(const Problem& p, int32_t x_zero, int64_t b, int64_t oy, int64_t ox, int64_t c) {
  const Geometry& g = p.g;
  int64_t s = 0;
  for (int64_t ky = 0; ky < g.kernel; ++ky) {
    for (int64_t kx = 0; kx < g.kernel; ++kx) {
      const int64_t iy = oy * g.stride - g.pad + ky * g.dilation, ix = ox * g.stride - g.pad + kx * g.dilation;
      if (iy < 0 || iy >= g.size || ix < 0 || ix >= g.size) continue;
      s += (int64_t(p.x[size_t(((b * g.size + iy) * g.size + ix) * g.channels + c)]) - x_zero) *
           p.w[size_t((c * g.kernel + ky) * g.kernel + kx)];
    }
  }
  return s;
}

class DepthwiseVariant : public ::testing::TestWithParam<k::DepthwiseInt8Kernels> {};

TEST_P(DepthwiseVariant, MatchesTheReferenceOnOddGeometriesAndExtremes) {
  if (!k::isa_supported(GetParam().isa)) {
    GTEST_SKIP() << "this CPU cannot run the " << k::isa_name(GetParam().isa)
                 << " depthwise conv; its parity test did not run";
  }
  const auto& ref = k::depthwise_int8_variants().front();
  std::mt19937 gen(0);
  int cases = 0;
  for (int64_t channels : {1, 3, 15, 16, 17, 31, 33, 64, 100}) {
    for (const Geometry& shape : {Geometry{1, 7, 0, 3, 1, 1, 1}, Geometry{2, 9, 0, 3, 2, 1, 1},
                                  Geometry{1, 6, 0, 5, 1, 2, 1}, Geometry{1, 8, 0, 3, 1, 2, 2},
                                  Geometry{1, 5, 0, 1, 1, 0, 1}, Geometry{1, 4, 0, 2, 2, 0, 1},
                                  Geometry{1, 3, 0, 7, 1, 3, 1}}) {
      Geometry g = shape;
      g.channels = channels;
      for (int fill : {0, 1, 2}) {
        const Problem p = make_problem(g, gen, fill);
        for (int32_t x_zero : {0, 128, 255}) {
          const auto args = make_args(p, x_zero);
          const auto got = run<int32_t>(GetParam(), p, args);
          ASSERT_EQ(got, run<int32_t>(ref, p, args)) << channels << " channels, kernel " << g.kernel << ", stride "
                                                     << g.stride << ", zero " << x_zero;
          if (GetParam().isa == k::Isa::kScalar) {
            size_t i = 0;
            for (int64_t b = 0; b < g.batch; ++b) {
              for (int64_t oy = 0; oy < p.out; ++oy) {
                for (int64_t ox = 0; ox < p.out; ++ox) {
                  for (int64_t c = 0; c < channels; ++c, ++i) ASSERT_EQ(got[i], definition(p, x_zero, b, oy, ox, c));
                }
              }
            }
          }
        }
        for (bool relu : {false, true}) {
          auto args = make_args(p, 3);
          args.epilogue.relu = relu;
          args.epilogue.bias = relu ? p.bias.data() : nullptr;
          args.epilogue.output = k::GemmOutput::kFloat;
          ASSERT_EQ(run<float>(GetParam(), p, args), run<float>(ref, p, args));
          args.epilogue.output = k::GemmOutput::kUint8;
          args.epilogue.inv_out_scale = 1.0f / 0.05f;
          args.epilogue.out_zero = relu ? 0 : 117;
          ASSERT_EQ(run<uint8_t>(GetParam(), p, args), run<uint8_t>(ref, p, args));
        }
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 9 * 7 * 3);
}

INSTANTIATE_TEST_SUITE_P(AllVariants, DepthwiseVariant, ::testing::ValuesIn(k::depthwise_int8_variants()),
                         [](const auto& info) { return std::string(k::isa_name(info.param.isa)); });

// Output rows split across calls (as the op splits them across threads) give
// the same result as one call.
TEST(Depthwise, RowRangesComposeToTheWholeOutput) {
  std::mt19937 gen(1);
  const Problem p = make_problem({2, 11, 40, 3, 1, 1, 1}, gen, 0);
  const auto& kernels = k::depthwise_int8_kernels();
  auto args = make_args(p, 9);
  const auto whole = run<int32_t>(kernels, p, args);
  std::vector<int32_t> parts(whole.size(), 7);
  args.epilogue.out = parts.data();
  for (int64_t r = 0; r < 2 * p.out; r += 5) kernels.conv(args, r, std::min<int64_t>(r + 5, 2 * p.out));
  EXPECT_EQ(parts, whole);
}

}  // namespace
