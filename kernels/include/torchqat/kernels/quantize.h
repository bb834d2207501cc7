// Torch-free quantization of float32 activations to uint8, the input of the
// integer GEMM:
//
//   q = clamp(round_half_even(x * (1/scale)) + zero_point, qmin, qmax)
//
// the q of affine_fake_quant (quant_math.h), so an exported layer sees the
// integers its QAT layer's fake-quantized input stood for. NaN becomes qmin
// (there is no integer NaN). 0 <= qmin <= qmax <= 255.
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels {

struct QuantizeU8Args {
  float scale = 1.0f;
  float zero_point = 0.0f;
  float qmin = 0.0f, qmax = 255.0f;
};

// Quantizes x[begin, end) into out[begin, end).
using QuantizeU8Fn = void (*)(const float* x, const QuantizeU8Args& args, uint8_t* out, int64_t begin,
                              int64_t end);

struct QuantizeKernels {
  Isa isa;
  QuantizeU8Fn quantize_u8;
};

void quantize_u8_reference(const float* x, const QuantizeU8Args& args, uint8_t* out, int64_t begin,
                           int64_t end);

const std::vector<QuantizeKernels>& quantize_variants();
const QuantizeKernels& quantize_kernels();

}  // namespace torchqat::kernels
