// W4A8 Linear: the weights' zero-point sums and the scalar reference.
#include "torchqat/kernels/gemm_w4a8.h"

namespace torchqat::kernels {

void int4_weight_sums(const int8_t* q, int64_t n, int64_t k, int64_t ldq, const float* scales, int64_t group_size,
                      float* weight_sums) {
  const int64_t groups = k / group_size;
  for (int64_t row = 0; row < n; ++row) {
    float acc = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      int32_t sum = 0;
      for (int64_t kk = g * group_size; kk < (g + 1) * group_size; ++kk) sum += q[row * ldq + kk];
      acc += scales[row * groups + g] * float(sum);
    }
    weight_sums[row] = acc;
  }
}

void gemm_w4a8_reference(const GemmW4A8Args& args, int64_t n_begin, int64_t n_end) {
  const int64_t groups = args.k / args.group_size;
  for (int64_t m = 0; m < args.m; ++m) {
    const uint8_t* x = args.x + m * args.k;
    for (int64_t n = n_begin; n < n_end; ++n) {
      const uint8_t* row = args.q + n * (args.k / 2);
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int64_t sum = 0;
        for (int64_t kk = g * args.group_size; kk < (g + 1) * args.group_size; ++kk) {
          sum += (int64_t(x[kk]) - args.x_zero) * int4_at(row, kk);
        }
        acc += float(sum) * args.scales[n * groups + g];
      }
      const float y = acc * args.x_scale;
      args.y[m * args.n + n] = args.bias ? y + args.bias[n] : y;
    }
  }
}

}  // namespace torchqat::kernels
