// Torch-free residual add of two uint8 activations, each on its own grid:
//
//   y = (a - a_zero) * a_scale + (b - b_zero) * b_scale     (float32)
//   y = max(y, 0)                                          (if relu)
//
// then y as float32, or quantized to uint8 with quantize.h's formula. Each
// term is the value fake_quantize gives for those integers, and the sum is
// the float add of them, so the result equals dequantize -> add (-> relu)
// (-> quantize_uint8) in ATen bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/quantize.h"

namespace torchqat::kernels {

struct AddU8Args {
  float a_scale = 1.0f, a_zero = 0.0f;
  float b_scale = 1.0f, b_zero = 0.0f;
  bool relu = false;
};

// out[i] = y(a[i], b[i]) for i in [begin, end).
using AddU8ToFloatFn = void (*)(const uint8_t* a, const uint8_t* b, const AddU8Args& args, float* out,
                                int64_t begin, int64_t end);
using AddU8ToU8Fn = void (*)(const uint8_t* a, const uint8_t* b, const AddU8Args& args,
                             const QuantizeU8Args& out_grid, uint8_t* out, int64_t begin, int64_t end);

struct AddU8Kernels {
  Isa isa;
  AddU8ToFloatFn to_float;
  AddU8ToU8Fn to_u8;
};

void add_u8_to_float_reference(const uint8_t* a, const uint8_t* b, const AddU8Args& args, float* out,
                               int64_t begin, int64_t end);
void add_u8_to_u8_reference(const uint8_t* a, const uint8_t* b, const AddU8Args& args,
                            const QuantizeU8Args& out_grid, uint8_t* out, int64_t begin, int64_t end);

const std::vector<AddU8Kernels>& add_u8_variants();
const AddU8Kernels& add_u8_kernels();

}  // namespace torchqat::kernels
