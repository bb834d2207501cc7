// Scalar reference of the uint8 max pooling (max_pool_u8.h).
#include <algorithm>

#include "max_pool_window.h"

namespace torchqat::kernels {

void max_pool_u8_reference(const MaxPoolU8Args& a, int64_t row_begin, int64_t row_end) {
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / a.out_h, oy = row % a.out_h;
    for (int64_t ox = 0; ox < a.out_w; ++ox) {
      uint8_t* out = a.out + ((b * a.out_h + oy) * a.out_w + ox) * a.channels;
      std::fill(out, out + a.channels, uint8_t{0});
      for_each_tap(a, b, oy, ox, [&](const uint8_t* in) {
        for (int64_t c = 0; c < a.channels; ++c) out[c] = std::max(out[c], in[c]);
      });
    }
  }
}

}  // namespace torchqat::kernels
