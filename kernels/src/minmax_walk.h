// Min/max loops shared by the CPU observer variants: lane policy V over whole
// vectors, ScalarOps at span edges; non-finite values skipped and counted.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "elements.h"
#include "torchqat/kernels/observe.h"

namespace torchqat::kernels {
namespace {

// Elements [s, e) of channel c.
template <class V, class E>
void minmax_span(const typename E::T* x, MinMaxState st, int64_t c, int64_t s, int64_t e) {
  constexpr int64_t W = V::kWidth;
  float lo = st.min[c], hi = st.max[c];
  int64_t bad = 0;
  int64_t i = s;
  if (e - s >= W) {
    const auto inf = V::set1(INFINITY), ninf = V::set1(-INFINITY), zero = V::set1(0.0f);
    auto vlo = inf, vhi = ninf;
    for (; i + W <= e; i += W) {
      const auto v = V::load(E{}, x + i);
      const auto finite = V::ge(V::sub(v, v), zero);  // v - v is NaN for NaN and +-Inf
      vlo = V::min_keep_nan(V::select(finite, v, inf), vlo);
      vhi = V::max_keep_nan(V::select(finite, v, ninf), vhi);
      bad += W - V::count(finite);
    }
    lo = std::min(lo, V::min_lane(vlo));
    hi = std::max(hi, V::max_lane(vhi));
  }
  for (; i < e; ++i) {
    const float v = E::load(x[i]);
    if (!std::isfinite(v)) {
      ++bad;
      continue;
    }
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  st.min[c] = lo;
  st.max[c] = hi;
  st.nonfinite[c] += bad;
}

template <class V, class E>
void minmax_range_impl(const void* x, ChannelLayout L, MinMaxState st, int64_t begin, int64_t end) {
  const auto* p = static_cast<const typename E::T*>(x);
  int64_t run = begin / L.inner;
  int64_t c = run % L.channels;
  for (int64_t i = begin; i < end; ++run) {
    const int64_t run_end = std::min(end, (run + 1) * L.inner);
    minmax_span<V, E>(p, st, c, i, run_end);
    i = run_end;
    if (++c == L.channels) c = 0;
  }
}

template <class V, class E>
void minmax_channels_impl(const void* x, ChannelLayout L, MinMaxState st, int64_t outer,
                          int64_t c_begin, int64_t c_end) {
  const auto* p = static_cast<const typename E::T*>(x);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      const int64_t start = (o * L.channels + c) * L.inner;
      minmax_span<V, E>(p, st, c, start, start + L.inner);
    }
  }
}

template <class V>
void minmax_range(DType dtype, const void* x, ChannelLayout L, MinMaxState st, int64_t begin,
                  int64_t end) {
  switch (dtype) {
    case DType::kFloat32:
      return minmax_range_impl<V, F32>(x, L, st, begin, end);
    case DType::kFloat16:
      return minmax_range_impl<V, F16>(x, L, st, begin, end);
    case DType::kBFloat16:
      return minmax_range_impl<V, BF16>(x, L, st, begin, end);
  }
}

template <class V>
void minmax_channels(DType dtype, const void* x, ChannelLayout L, MinMaxState st, int64_t outer,
                     int64_t c_begin, int64_t c_end) {
  switch (dtype) {
    case DType::kFloat32:
      return minmax_channels_impl<V, F32>(x, L, st, outer, c_begin, c_end);
    case DType::kFloat16:
      return minmax_channels_impl<V, F16>(x, L, st, outer, c_begin, c_end);
    case DType::kBFloat16:
      return minmax_channels_impl<V, BF16>(x, L, st, outer, c_begin, c_end);
  }
}

}  // namespace
}  // namespace torchqat::kernels
