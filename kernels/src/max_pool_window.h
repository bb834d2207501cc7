// The taps of one max-pool window that fall inside the input (max_pool_u8.h),
// shared by every variant.
#pragma once

#include <algorithm>
#include <cstdint>

#include "torchqat/kernels/max_pool_u8.h"

namespace torchqat::kernels {

// [first, last) of the taps along one axis whose input index is in [0, size).
struct TapRange {
  int64_t first, last;
};

inline TapRange taps_inside(int64_t start, int64_t kernel, int64_t dilation, int64_t size) {
  int64_t first = 0, last = kernel;
  while (first < kernel && start + first * dilation < 0) ++first;
  while (last > first && start + (last - 1) * dilation >= size) --last;
  return {first, last};
}

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
