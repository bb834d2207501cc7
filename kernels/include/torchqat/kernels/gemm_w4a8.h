// Torch-free W4A8 Linear kernels: uint8 activations x int4 weights with an
// exact integer sum per weight group:
//
//   y[m, n] = x_scale * sum_g scale[n, g] * S[m, n, g]  (+ bias[n])
//   S[m, n, g] = sum_{k in group g} (x[m, k] - x_zero) * q[n, k]    (exact, int32)
//
// The weights are packed as for the INT4 weight-only GEMV (gemv_int4.h: two
// per byte, byte j of each 32-k block holding k = j and k = j + 16). The
// activation zero point costs one multiply per output through
// weight_sums[n] = sum_g scale[n, g] * sum_{k in g} q[n, k], computed once
// with the weights, so that batch-1 calls read nothing per group but the
// scales.
//
// Why integers: u8 x s4 products fit vpmaddubsw's int16 pair sums without
// saturation (2 * 255 * 15 < 2^15, on the weights offset to [0, 15]), so the
// AVX2 kernel does 32 multiply-adds per instruction where the INT8 GEMM's
// exact path (vpmaddwd) does 16. The float sum over groups runs in another
// order in vectorised variants: they agree with the reference to float
// rounding, and exactly where every partial sum is representable (the tests
// use power-of-two scales for that).
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/gemv_int4.h"

namespace torchqat::kernels {

// weight_sums[n] = sum_g scales[n, g] * sum_{k in g} q[n, k], in group order
// (q as for pack_int4_weights, scales [n, k / group_size]).
void int4_weight_sums(const int8_t* q, int64_t n, int64_t k, int64_t ldq, const float* scales, int64_t group_size,
                      float* weight_sums);

struct GemmW4A8Args {
  const uint8_t* x = nullptr;  // [m, k]
  int64_t m = 0, n = 0, k = 0;
  int32_t x_zero = 0;
  float x_scale = 1.0f;
  const uint8_t* q = nullptr;          // [n, k / 2], pack_int4_weights
  const float* scales = nullptr;       // [n, k / group_size]
  const float* weight_sums = nullptr;  // [n], int4_weight_sums (read when x_zero != 0)
  int64_t group_size = 32;             // a multiple of kInt4Block
  const float* bias = nullptr;         // [n] or nullptr
  float* y = nullptr;                  // [m, n]
};

// Output columns n in [n_begin, n_end) of every row.
using GemmW4A8Fn = void (*)(const GemmW4A8Args& args, int64_t n_begin, int64_t n_end);

struct GemmW4A8Kernels {
  Isa isa;
  GemmW4A8Fn gemm;
};

// The reference: int64 group sums S (zero point included), then
// acc += float(S) * scale in group order, y = acc * x_scale + bias.
void gemm_w4a8_reference(const GemmW4A8Args& args, int64_t n_begin, int64_t n_end);

const std::vector<GemmW4A8Kernels>& gemm_w4a8_variants();
const GemmW4A8Kernels& gemm_w4a8_kernels();

}  // namespace torchqat::kernels
