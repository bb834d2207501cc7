// The taps of a sliding window (conv, pooling) along one axis that fall
// inside the input; shared by im2col and the pooling kernels.
#pragma once

#include <cstdint>

namespace torchqat::kernels {

// [first, last) of the taps k in [0, kernel) whose input index
// start + k * dilation lies in [0, size); first == last when none does.
struct TapRange {
  int64_t first, last;
};

inline TapRange taps_inside(int64_t start, int64_t kernel, int64_t dilation, int64_t size) {
  int64_t first = 0, last = kernel;
  while (first < kernel && start + first * dilation < 0) ++first;
  while (last > first && start + (last - 1) * dilation >= size) --last;
  return {first, last};
}

}  // namespace torchqat::kernels
