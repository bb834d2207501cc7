// The loop shared by every CPU variant of the fake-quant kernels: walk the
// runs of a flat range, quantize whole vectors of lane policy V inside a run
// and single elements (ScalarOps) at run edges. Included only by kernel TUs;
// the anonymous namespace gives each TU (each ISA) its own instantiations, so
// the linker can never hand an AVX-512 copy to a portable caller.
#pragma once

#include <algorithm>
#include <cstdint>

#include "elements.h"
#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels {
namespace {

inline void set_mask_bit(uint8_t* mask, int64_t i, bool in_range) {
  const uint8_t bit = uint8_t(1u << (i & 7));
  mask[i >> 3] = uint8_t((mask[i >> 3] & ~bit) | (in_range ? bit : 0));
}

// What a quantizer provides to the walk: parameters for one channel (any lane
// policy), for W consecutive channels (vector policy), and the math.
template <class V>
struct AffineQuant {
  const AffineArgs& args;
  template <class Ops>
  AffineParams<Ops> at(int64_t c) const {
    return make_affine_params<Ops>(args.scale[c], args.zero_point[c], args.quant_min,
                                   args.quant_max);
  }
  AffineParams<V> lanes(int64_t c) const {
    const auto scale = V::loadu(args.scale + c);
    return {V::reciprocal(scale), scale, V::loadu(args.zero_point + c), V::set1(args.quant_min),
            V::set1(args.quant_max)};
  }
  template <class Ops>
  typename Ops::F apply(typename Ops::F x, const AffineParams<Ops>& p,
                        typename Ops::M* in_range) const {
    return affine_fake_quant<Ops>(x, p, in_range);
  }
};

template <class V>
struct Fp8Quant {
  const Fp8Args& args;
  template <class Ops>
  Fp8Params<Ops> at(int64_t c) const {
    return make_fp8_params<Ops>(args.scale[c], fp8_spec(args.format));
  }
  Fp8Params<V> lanes(int64_t c) const {
    auto p = make_fp8_params<V>(1.0f, fp8_spec(args.format));
    p.scale = V::loadu(args.scale + c);
    p.inv_scale = V::reciprocal(p.scale);
    return p;
  }
  template <class Ops>
  typename Ops::F apply(typename Ops::F x, const Fp8Params<Ops>& p,
                        typename Ops::M* in_range) const {
    return fp8_fake_quant<Ops>(x, p, in_range);
  }
};

template <class E, class Quant, class P>
inline void quantize_one(const Quant& quant, const P& params, const typename E::T* x,
                         typename E::T* y, uint8_t* mask, int64_t i) {
  bool in_range;
  const float out = quant.template apply<ScalarOps>(E::load(x[i]), params, &in_range);
  y[i] = E::store(out);
  if (mask) set_mask_bit(mask, i, in_range);
}

// inner == 1 with several channels: every element has its own parameters,
// W consecutive channels per vector.
template <class V, class E, class Quant>
void walk_per_element(const Quant& quant, const typename E::T* x, typename E::T* y,
                      uint8_t* mask, int64_t begin, int64_t end, int64_t channels) {
  constexpr int64_t W = V::kWidth;
  int64_t c = begin % channels;
  for (int64_t i = begin; i < end;) {
    if ((i & 7) == 0 && i + W <= end && c + W <= channels) {
      typename V::M in_range;
      V::store(E{}, y + i,
               quant.template apply<V>(V::load(E{}, x + i), quant.lanes(c), &in_range));
      if (mask) V::store_mask(mask + i / 8, in_range);
      i += W;
      c += W;
    } else {
      quantize_one<E>(quant, quant.template at<ScalarOps>(c), x, y, mask, i);
      ++i;
      ++c;
    }
    if (c == channels) c = 0;
  }
}

template <class V, class E, class Quant>
void walk_runs(const Quant& quant, const typename E::T* x, typename E::T* y, uint8_t* mask,
               int64_t begin, int64_t end, ChannelLayout layout) {
  constexpr int64_t W = V::kWidth;
  if (layout.inner == 1 && layout.channels > 1) {
    walk_per_element<V, E>(quant, x, y, mask, begin, end, layout.channels);
    return;
  }
  int64_t run = begin / layout.inner;
  int64_t c = run % layout.channels;
  for (int64_t i = begin; i < end;) {
    const int64_t run_end = std::min(end, (run + 1) * layout.inner);
    const auto scalar_params = quant.template at<ScalarOps>(c);
    for (; i < run_end && (i & 7) != 0; ++i) {
      quantize_one<E>(quant, scalar_params, x, y, mask, i);
    }
    if (run_end - i >= W) {
      const auto params = quant.template at<V>(c);
      for (; i + W <= run_end; i += W) {
        typename V::M in_range;
        V::store(E{}, y + i, quant.template apply<V>(V::load(E{}, x + i), params, &in_range));
        if (mask) V::store_mask(mask + i / 8, in_range);
      }
    }
    for (; i < run_end; ++i) quantize_one<E>(quant, scalar_params, x, y, mask, i);
    ++run;
    if (++c == layout.channels) c = 0;
  }
}

template <class V, class Quant>
void walk_dtype(const Quant& quant, DType dtype, const void* x, void* y, uint8_t* mask,
                int64_t begin, int64_t end, ChannelLayout layout) {
  switch (dtype) {
    case DType::kFloat32:
      return walk_runs<V, F32>(quant, static_cast<const float*>(x), static_cast<float*>(y),
                               mask, begin, end, layout);
    case DType::kFloat16:
      return walk_runs<V, F16>(quant, static_cast<const uint16_t*>(x),
                               static_cast<uint16_t*>(y), mask, begin, end, layout);
    case DType::kBFloat16:
      return walk_runs<V, BF16>(quant, static_cast<const uint16_t*>(x),
                                static_cast<uint16_t*>(y), mask, begin, end, layout);
  }
}

template <class V>
void affine_fake_quant_range(const AffineArgs& args, DType dtype, const void* x, void* y,
                             uint8_t* mask, int64_t begin, int64_t end) {
  walk_dtype<V>(AffineQuant<V>{args}, dtype, x, y, mask, begin, end, args.layout);
}

template <class V>
void fp8_fake_quant_range(const Fp8Args& args, DType dtype, const void* x, void* y,
                          uint8_t* mask, int64_t begin, int64_t end) {
  walk_dtype<V>(Fp8Quant<V>{args}, dtype, x, y, mask, begin, end, args.layout);
}

// Scalar masked gradient for [begin, end); vector variants call it for tails.
template <class T>
void masked_grad_scalar(const T* g, const uint8_t* mask, T* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    out[i] = (mask[i >> 3] >> (i & 7)) & 1 ? g[i] : T(0);
  }
}

}  // namespace
}  // namespace torchqat::kernels
