// Torch-free observer kernels: per-channel running statistics of a tensor.
// Same flat layout as fake_quant.h (runs of `inner` elements, run r -> channel
// r % channels). Non-finite values (NaN, +-Inf) are skipped and counted.
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels {

struct MinMaxState {
  float* min;          // [channels], updated in place (start at +inf)
  float* max;          // [channels], updated in place (start at -inf)
  int64_t* nonfinite;  // [channels], incremented
};

// Folds elements [begin, end) of x into the per-channel state.
using MinMaxRangeFn = void (*)(DType dtype, const void* x, ChannelLayout layout, MinMaxState state,
                               int64_t begin, int64_t end);
// Folds every element of channels [c_begin, c_end) over `outer` slices.
using MinMaxChannelsFn = void (*)(DType dtype, const void* x, ChannelLayout layout,
                                  MinMaxState state, int64_t outer, int64_t c_begin,
                                  int64_t c_end);

// Adds the finite values of x[begin, end) to counts[bins] over range [lo, hi]
// (see histogram.h); returns how many were non-finite.
using HistogramAddFn = int64_t (*)(DType dtype, const void* x, int64_t begin, int64_t end,
                                   int64_t* counts, int64_t bins, double lo, double hi);

struct ObserverKernels {
  Isa isa;
  MinMaxRangeFn minmax_range;
  MinMaxChannelsFn minmax_channels;
  HistogramAddFn histogram_add;
};

// Every compiled variant, scalar reference first (tests, benchmarks).
const std::vector<ObserverKernels>& observer_variants();
// The variant of the active ISA (see fake_quant.h's set_isa).
const ObserverKernels& observer_kernels();

}  // namespace torchqat::kernels
