// Torch-free 2-D max pooling of channels-last (NHWC) uint8 activations:
//
//   out[b, oy, ox, c] = max over taps in the input of x[b, iy, ix, c]
//   iy = oy * stride_h - pad_h + ky * dilation_h   (ix likewise)
//
// Taps in the padding are skipped, as in ATen. Quantization is monotone, so
// the max of the integers is the integer of the max: pooling a uint8
// activation equals quantizing the pooled float one. Every window must hold
// at least one input tap (ATen's limit pad <= kernel / 2 guarantees it).
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels {

struct MaxPoolU8Args {
  const uint8_t* x = nullptr;  // [batch, height, width, channels]
  int64_t batch = 0, height = 0, width = 0, channels = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;
  uint8_t* out = nullptr;  // [batch, out_h, out_w, channels]
};

// Computes output rows [row_begin, row_end) (a row: one (b, oy), all ox and channels).
using MaxPoolU8Fn = void (*)(const MaxPoolU8Args& args, int64_t row_begin, int64_t row_end);

struct MaxPoolU8Kernels {
  Isa isa;
  MaxPoolU8Fn pool;
};

void max_pool_u8_reference(const MaxPoolU8Args& args, int64_t row_begin, int64_t row_end);

const std::vector<MaxPoolU8Kernels>& max_pool_u8_variants();
const MaxPoolU8Kernels& max_pool_u8_kernels();

}  // namespace torchqat::kernels
