// Scalar reference of the uint8 quantization (quantize.h).
#include "torchqat/kernels/quant_math.h"
#include "torchqat/kernels/quantize.h"

namespace torchqat::kernels {

void quantize_u8_reference(const float* x, const QuantizeU8Args& args, uint8_t* out, int64_t begin,
                           int64_t end) {
  const float inv_scale = reciprocal_scale(args.scale);
  for (int64_t i = begin; i < end; ++i) {
    const float q = ScalarOps::round_even(x[i] * inv_scale) + args.zero_point;
    float clamped = q;
    if (!(clamped >= args.qmin)) clamped = args.qmin;  // NaN too
    if (clamped > args.qmax) clamped = args.qmax;
    out[i] = uint8_t(clamped);
  }
}

}  // namespace torchqat::kernels
