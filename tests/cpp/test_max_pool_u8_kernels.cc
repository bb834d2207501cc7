// uint8 max pooling: the reference against the definition written out
// (windows with padding, stride, dilation), and every variant the CPU runs
// bit-exact against the reference, on channel counts around the vector width.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <random>
#include <vector>

#include "torchqat/kernels/max_pool_u8.h"

namespace k = torchqat::kernels;

namespace {

struct Problem {
  k::MaxPoolU8Args args;
  std::vector<uint8_t> x;
};

Problem problem(int64_t batch, int64_t h, int64_t w, int64_t c, int64_t kernel, int64_t stride, int64_t pad,
                int64_t dilation, std::mt19937& gen) {
  Problem p;
  auto& a = p.args;
  a.batch = batch, a.height = h, a.width = w, a.channels = c;
  a.kernel_h = a.kernel_w = kernel, a.stride_h = a.stride_w = stride, a.pad_h = a.pad_w = pad;
  a.dilation_h = a.dilation_w = dilation;
  a.out_h = (h + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
  a.out_w = (w + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
  std::uniform_int_distribution<int> byte(0, 255);
  p.x.resize(size_t(batch * h * w * c));
  for (auto& v : p.x) v = uint8_t(byte(gen));
  a.x = p.x.data();
  return p;
}

TEST(MaxPoolU8, ReferenceMatchesTheDefinition) {
  std::mt19937 gen(1);
  for (int64_t pad : {0, 1}) {
    Problem p = problem(2, 9, 7, 5, 3, 2, pad, 1, gen);
    const auto& a = p.args;
    std::vector<uint8_t> out(size_t(a.batch * a.out_h * a.out_w * a.channels));
    p.args.out = out.data();
    k::max_pool_u8_reference(p.args, 0, a.batch * a.out_h);
    for (int64_t b = 0; b < a.batch; ++b)
      for (int64_t oy = 0; oy < a.out_h; ++oy)
        for (int64_t ox = 0; ox < a.out_w; ++ox)
          for (int64_t c = 0; c < a.channels; ++c) {
            int best = -1;
            for (int64_t ky = 0; ky < 3; ++ky)
              for (int64_t kx = 0; kx < 3; ++kx) {
                const int64_t iy = oy * 2 - pad + ky, ix = ox * 2 - pad + kx;
                if (iy < 0 || iy >= a.height || ix < 0 || ix >= a.width) continue;
                best = std::max<int>(best, p.x[((b * a.height + iy) * a.width + ix) * a.channels + c]);
              }
            ASSERT_EQ(out[((b * a.out_h + oy) * a.out_w + ox) * a.channels + c], best);
          }
  }
}

TEST(MaxPoolU8, VariantsMatchTheReference) {
  std::mt19937 gen(2);
  int ran = 0;
  for (const auto& v : k::max_pool_u8_variants()) {
    if (!k::isa_supported(v.isa)) continue;
    ++ran;
    for (int64_t c : {1, 31, 32, 33, 64, 100}) {
      for (auto [kernel, stride, pad, dilation] : {std::array<int64_t, 4>{3, 2, 1, 1}, {2, 2, 0, 1}, {3, 1, 1, 2}}) {
        Problem p = problem(2, 11, 8, c, kernel, stride, pad, dilation, gen);
        const int64_t rows = p.args.batch * p.args.out_h, size = rows * p.args.out_w * c;
        std::vector<uint8_t> ref(static_cast<size_t>(size)), got(static_cast<size_t>(size), 0xAB);
        p.args.out = ref.data();
        k::max_pool_u8_reference(p.args, 0, rows);
        p.args.out = got.data();
        v.pool(p.args, 0, rows);
        ASSERT_EQ(got, ref) << k::isa_name(v.isa) << " channels " << c << " kernel " << kernel;
      }
    }
  }
  EXPECT_GE(ran, 1);
}

}  // namespace
