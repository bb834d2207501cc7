// INT4 weight-only GEMV: packing and the scalar reference.
#include <algorithm>

#include "torchqat/kernels/gemv_int4.h"

namespace torchqat::kernels {

void pack_int4_weights(const int8_t* q, int64_t n, int64_t k, int64_t ldq, uint8_t* out) {
  for (int64_t row = 0; row < n; ++row) {
    uint8_t* dst = out + row * (k / 2);
    std::fill(dst, dst + k / 2, uint8_t{0});
    for (int64_t kk = 0; kk < k; ++kk) {
      const int64_t block = kk / kInt4Block, j = kk % kInt4Block;
      const uint8_t nibble = uint8_t(q[row * ldq + kk]) & 0x0f;
      dst[block * 16 + (j % 16)] |= j < 16 ? nibble : uint8_t(nibble << 4);
    }
  }
}

void gemv_int4_reference(const GemvInt4Args& args, int64_t n_begin, int64_t n_end) {
  const int64_t groups = args.k / args.group_size;
  for (int64_t m = 0; m < args.m; ++m) {
    const float* x = args.x + m * args.k;
    for (int64_t n = n_begin; n < n_end; ++n) {
      const uint8_t* row = args.q + n * (args.k / 2);
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        float sum = 0.0f;
        for (int64_t kk = g * args.group_size; kk < (g + 1) * args.group_size; ++kk) {
          sum += x[kk] * float(int4_at(row, kk));
        }
        acc += sum * args.scales[n * groups + g];
      }
      args.y[m * args.n + n] = args.bias ? acc + args.bias[n] : acc;
    }
  }
}

}  // namespace torchqat::kernels
