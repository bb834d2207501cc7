// Scalar reference of the uint8 residual add (add_u8.h).
#include "torchqat/kernels/add_u8.h"

namespace torchqat::kernels {
namespace {

inline float sum_of(uint8_t a, uint8_t b, const AddU8Args& args) {
  const float y = (float(a) - args.a_zero) * args.a_scale + (float(b) - args.b_zero) * args.b_scale;
  return args.relu && !(y > 0.0f) ? 0.0f : y;
}

}  // namespace

void add_u8_to_float_reference(const uint8_t* a, const uint8_t* b, const AddU8Args& args, float* out,
                               int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) out[i] = sum_of(a[i], b[i], args);
}

void add_u8_to_u8_reference(const uint8_t* a, const uint8_t* b, const AddU8Args& args,
                            const QuantizeU8Args& out_grid, uint8_t* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float y = sum_of(a[i], b[i], args);
    quantize_u8_reference(&y, out_grid, out + i, 0, 1);
  }
}

}  // namespace torchqat::kernels
