// LSQ backward loops shared by the CPU variants: walk spans of one channel,
// write grad_x, accumulate the per-channel sums. Lane policy V for whole
// vectors, ScalarOps at span edges; V = ScalarOps gives the reference.
#pragma once

#include <algorithm>
#include <cstdint>

#include "elements.h"
#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels {
namespace {

// Float lanes are flushed into the double sums every this many vectors,
// counted from the span's start: a fixed point, whatever the threading.
constexpr int64_t kLsqFlushVectors = 128;

template <class V>
AffineParams<V> lsq_params(const AffineArgs& a, int64_t c) {
  return make_affine_params<V>(a.scale[c], a.zero_point[c], a.quant_min, a.quant_max);
}

// Elements [s, e) of one channel c.
template <class V, class E>
void lsq_span(const AffineArgs& args, int64_t c, const typename E::T* x, const typename E::T* g,
              typename E::T* gx, LsqSums sums, int64_t s, int64_t e) {
  constexpr int64_t W = V::kWidth;
  double scale_sum = 0.0, outside_sum = 0.0;
  int64_t i = s;
  if (e - s >= W) {
    const auto p = lsq_params<V>(args, c);
    while (i + W <= e) {
      auto acc_scale = V::set1(0.0f), acc_outside = V::set1(0.0f);
      for (int64_t k = 0; k < kLsqFlushVectors && i + W <= e; ++k, i += W) {
        const auto t = lsq_backward_terms<V>(V::load(E{}, x + i), V::load(E{}, g + i), p);
        V::store(E{}, gx + i, t.grad_x);
        acc_scale = V::add(acc_scale, t.scale_term);
        acc_outside = V::add(acc_outside, t.outside_grad);
      }
      scale_sum += double(V::sum(acc_scale));
      outside_sum += double(V::sum(acc_outside));
    }
  }
  if (i < e) {
    const auto p = lsq_params<ScalarOps>(args, c);
    for (; i < e; ++i) {
      const auto t = lsq_backward_terms<ScalarOps>(E::load(x[i]), E::load(g[i]), p);
      gx[i] = E::store(t.grad_x);
      scale_sum += double(t.scale_term);
      outside_sum += double(t.outside_grad);
    }
  }
  sums.scale_sum[c] += scale_sum;
  sums.outside_sum[c] += outside_sum;
}

template <class V, class E>
void lsq_range(const AffineArgs& args, const void* x, const void* g, void* gx, LsqSums sums,
               int64_t begin, int64_t end) {
  const auto& L = args.layout;
  int64_t run = begin / L.inner;
  int64_t c = run % L.channels;
  for (int64_t i = begin; i < end; ++run) {
    const int64_t run_end = std::min(end, (run + 1) * L.inner);
    lsq_span<V, E>(args, c, static_cast<const typename E::T*>(x),
                   static_cast<const typename E::T*>(g), static_cast<typename E::T*>(gx), sums, i,
                   run_end);
    i = run_end;
    if (++c == L.channels) c = 0;
  }
}

template <class V, class E>
void lsq_channels(const AffineArgs& args, const void* x, const void* g, void* gx, LsqSums sums,
                  int64_t outer, int64_t c_begin, int64_t c_end) {
  const auto& L = args.layout;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      const int64_t start = (o * L.channels + c) * L.inner;
      lsq_span<V, E>(args, c, static_cast<const typename E::T*>(x),
                     static_cast<const typename E::T*>(g), static_cast<typename E::T*>(gx), sums,
                     start, start + L.inner);
    }
  }
}

template <class V>
void lsq_backward_range(const AffineArgs& args, DType dtype, const void* x, const void* g,
                        void* gx, LsqSums sums, int64_t begin, int64_t end) {
  switch (dtype) {
    case DType::kFloat32:
      return lsq_range<V, F32>(args, x, g, gx, sums, begin, end);
    case DType::kFloat16:
      return lsq_range<V, F16>(args, x, g, gx, sums, begin, end);
    case DType::kBFloat16:
      return lsq_range<V, BF16>(args, x, g, gx, sums, begin, end);
  }
}

template <class V>
void lsq_backward_channels(const AffineArgs& args, DType dtype, const void* x, const void* g,
                           void* gx, LsqSums sums, int64_t outer, int64_t c_begin, int64_t c_end) {
  switch (dtype) {
    case DType::kFloat32:
      return lsq_channels<V, F32>(args, x, g, gx, sums, outer, c_begin, c_end);
    case DType::kFloat16:
      return lsq_channels<V, F16>(args, x, g, gx, sums, outer, c_begin, c_end);
    case DType::kBFloat16:
      return lsq_channels<V, BF16>(args, x, g, gx, sums, outer, c_begin, c_end);
  }
}

}  // namespace
}  // namespace torchqat::kernels
