// Element types as stored in memory, with their scalar conversions to the
// float32 the math runs in. Vector lane policies overload load/store on them.
#pragma once

#include <cstdint>

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

}  // namespace
}  // namespace torchqat::kernels
