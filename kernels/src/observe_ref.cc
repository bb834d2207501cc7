// Scalar reference of the observer kernels: one element at a time, the
// channel recomputed for each.
#include <algorithm>
#include <cmath>

#include "elements.h"
#include "torchqat/kernels/histogram.h"
#include "torchqat/kernels/observe.h"
#include "variants.h"

namespace torchqat::kernels {
namespace {

template <class E>
void fold(const void* x, ChannelLayout L, MinMaxState st, int64_t i) {
  const float v = E::load(static_cast<const typename E::T*>(x)[i]);
  const int64_t c = (i / L.inner) % L.channels;
  if (!std::isfinite(v)) {
    ++st.nonfinite[c];
    return;
  }
  st.min[c] = std::min(st.min[c], v);
  st.max[c] = std::max(st.max[c], v);
}

void minmax_range_reference(DType dtype, const void* x, ChannelLayout L, MinMaxState st,
                            int64_t begin, int64_t end) {
  for_dtype(dtype, [&](auto e) {
    for (int64_t i = begin; i < end; ++i) fold<decltype(e)>(x, L, st, i);
  });
}

void minmax_channels_reference(DType dtype, const void* x, ChannelLayout L, MinMaxState st,
                               int64_t outer, int64_t c_begin, int64_t c_end) {
  for_dtype(dtype, [&](auto e) {
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t c = c_begin; c < c_end; ++c) {
        for (int64_t k = 0; k < L.inner; ++k) {
          fold<decltype(e)>(x, L, st, (o * L.channels + c) * L.inner + k);
        }
      }
    }
  });
}

int64_t histogram_add_reference(DType dtype, const void* x, int64_t begin, int64_t end,
                                int64_t* counts, int64_t bins, double lo, double hi) {
  return histogram_add(dtype, x, begin, end, counts, bins, {lo, hi});
}

}  // namespace

ObserverKernels scalar_observer_kernels() {
  return {Isa::kScalar, &minmax_range_reference, &minmax_channels_reference,
          &histogram_add_reference};
}

}  // namespace torchqat::kernels
