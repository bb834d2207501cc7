// Element types as stored in memory, with their scalar conversions to the
// float32 the math runs in. Vector lane policies overload load/store on them.
#pragma once

#include <cstdint>

#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/half_float.h"

namespace torchqat::kernels {
namespace {

struct F32 {
  using T = float;
  static TORCHQAT_HD float load(T v) { return v; }
  static TORCHQAT_HD T store(float v) { return v; }
};
struct F16 {
  using T = uint16_t;
  static TORCHQAT_HD float load(T v) { return half_to_float(v); }
  static TORCHQAT_HD T store(float v) { return float_to_half(v); }
};
struct BF16 {
  using T = uint16_t;
  static TORCHQAT_HD float load(T v) { return bfloat16_to_float(v); }
  static TORCHQAT_HD T store(float v) { return float_to_bfloat16(v); }
};

// Calls body(E{}) with the element type of `dtype`.
template <class Body>
void for_dtype(DType dtype, const Body& body) {
  switch (dtype) {
    case DType::kFloat32:
      return body(F32{});
    case DType::kFloat16:
      return body(F16{});
    case DType::kBFloat16:
      return body(BF16{});
  }
}

}  // namespace
}  // namespace torchqat::kernels
