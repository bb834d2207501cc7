// How the CPU ops split work over ATen's thread pool. Reductions are split so
// that their results do not depend on the thread count: with many channels a
// task owns whole channels; with few, fixed tiles reduce into their own slot
// and the caller folds the slots in tile order.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat {

// Elements per task or tile: enough to amortise a task, and small tensors
// stay on one thread.
inline constexpr int64_t kTileElements = int64_t{1} << 16;
// From this many channels on, reductions split by channel.
inline constexpr int64_t kChannelSplitMin = 16;

// body(begin, end) over [0, numel), split on multiples of 8 elements so that
// no two tasks write the same byte of a 1-bit mask.
template <class Body>
void parallel_over_elements(int64_t numel, const Body& body) {
  at::parallel_for(0, kernels::mask_bytes(numel), kTileElements / 8, [&](int64_t b, int64_t e) {
    body(b * 8, std::min(e * 8, numel));
  });
}

inline int64_t tile_count(int64_t numel) { return (numel + kTileElements - 1) / kTileElements; }

// body(tile, begin, end) for every fixed tile of [0, numel).
template <class Body>
void parallel_over_tiles(int64_t numel, const Body& body) {
  at::parallel_for(0, tile_count(numel), 1, [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; ++t) {
      body(t, t * kTileElements, std::min((t + 1) * kTileElements, numel));
    }
  });
}

// body(c_begin, c_end) over [0, channels), about kTileElements elements a task.
template <class Body>
void parallel_over_channels(int64_t numel, int64_t channels, const Body& body) {
  const int64_t per_channel = std::max<int64_t>(numel / channels, 1);
  at::parallel_for(0, channels, std::max<int64_t>(1, kTileElements / per_channel), body);
}

}  // namespace torchqat
