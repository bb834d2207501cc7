// Torch-free INT4 weight-only matrix-vector kernels for batch-1 decoding:
//
//   y[m, n] = sum_g scale[n, g] * sum_{k in group g} x[m, k] * q[n, k]   (+ bias[n])
//
// x: float32 activations; q: signed int4 weights in [-8, 7], symmetric, with
// one float scale per `group_size` consecutive k (a multiple of 32). Two
// weights per byte. Within each block of 32 k of a row, byte j holds k = j in
// its low nibble and k = j + 16 in its high one, so one 16-byte load yields
// two runs of 16 consecutive k. The group sums are accumulated in float32;
// vectorised variants add in a different order than the reference, so they
// agree to float rounding, not bitwise.
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels {

inline constexpr int64_t kInt4Block = 32;  // k per 16 packed bytes

// Packs q[n, k] (int8 values in [-8, 7], row stride ldq; k a multiple of 32)
// into out[n * k / 2].
void pack_int4_weights(const int8_t* q, int64_t n, int64_t k, int64_t ldq, uint8_t* out);

// The int4 value of packed row `row` (k / 2 bytes) at column kk.
inline int32_t int4_at(const uint8_t* row, int64_t kk) {
  const int64_t block = kk / kInt4Block, j = kk % kInt4Block;
  const uint8_t byte = row[block * 16 + (j % 16)];
  const int32_t nibble = j < 16 ? (byte & 0x0f) : (byte >> 4);
  return (nibble ^ 8) - 8;
}

struct GemvInt4Args {
  const float* x = nullptr;  // [m, k]
  int64_t m = 0, n = 0, k = 0;
  const uint8_t* q = nullptr;      // [n, k / 2]
  const float* scales = nullptr;   // [n, k / group_size]
  int64_t group_size = 32;
  const float* bias = nullptr;     // [n] or nullptr
  float* y = nullptr;              // [m, n]
};

// Rows n in [n_begin, n_end) of every output.
using GemvInt4Fn = void (*)(const GemvInt4Args& args, int64_t n_begin, int64_t n_end);

struct GemvInt4Kernels {
  Isa isa;
  GemvInt4Fn gemv;
};

void gemv_int4_reference(const GemvInt4Args& args, int64_t n_begin, int64_t n_end);

const std::vector<GemvInt4Kernels>& gemv_int4_variants();
const GemvInt4Kernels& gemv_int4_kernels();

}  // namespace torchqat::kernels
