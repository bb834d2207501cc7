// The taps of one max-pool window that fall inside the input (max_pool_u8.h),
// shared by every variant.
#pragma once

#include <cstdint>

#include "torchqat/kernels/max_pool_u8.h"
#include "torchqat/kernels/tap_range.h"

namespace torchqat::kernels {

// Calls visit(pointer to the channels of input pixel) for every tap of output
// pixel (b, oy, ox) inside the input.
template <class Visit>
inline void for_each_tap(const MaxPoolU8Args& a, int64_t b, int64_t oy, int64_t ox, Visit visit) {
  const int64_t y0 = oy * a.stride_h - a.pad_h, x0 = ox * a.stride_w - a.pad_w;
  const TapRange ys = taps_inside(y0, a.kernel_h, a.dilation_h, a.height);
  const TapRange xs = taps_inside(x0, a.kernel_w, a.dilation_w, a.width);
  for (int64_t ky = ys.first; ky < ys.last; ++ky) {
    const int64_t iy = y0 + ky * a.dilation_h;
    for (int64_t kx = xs.first; kx < xs.last; ++kx) {
      const int64_t ix = x0 + kx * a.dilation_w;
      visit(a.x + ((b * a.height + iy) * a.width + ix) * a.channels);
    }
  }
}

}  // namespace torchqat::kernels
