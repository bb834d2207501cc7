// Scalar reference of the fake-quant kernels: one element at a time, the
// channel recomputed for every element. The vector variants must match it
// bit for bit.
#include "elements.h"
#include "fake_quant_walk.h"
#include "torchqat/kernels/fake_quant.h"
#include "variants.h"

namespace torchqat::kernels {
namespace {

template <class E, class Quant>
void reference_loop(const Quant& quant, const void* x, void* y, uint8_t* mask, int64_t begin,
                    int64_t end, ChannelLayout layout) {
  const auto* in = static_cast<const typename E::T*>(x);
  auto* out = static_cast<typename E::T*>(y);
  for (int64_t i = begin; i < end; ++i) {
    const int64_t channel = (i / layout.inner) % layout.channels;
    quantize_one<E>(quant, quant.template at<ScalarOps>(channel), in, out, mask, i);
  }
}

template <class Quant>
void reference(const Quant& quant, DType dtype, const void* x, void* y, uint8_t* mask,
               int64_t begin, int64_t end, ChannelLayout layout) {
  switch (dtype) {
    case DType::kFloat32:
      return reference_loop<F32>(quant, x, y, mask, begin, end, layout);
    case DType::kFloat16:
      return reference_loop<F16>(quant, x, y, mask, begin, end, layout);
    case DType::kBFloat16:
      return reference_loop<BF16>(quant, x, y, mask, begin, end, layout);
  }
}

void affine_reference(const AffineArgs& args, DType dtype, const void* x, void* y,
                      uint8_t* mask, int64_t begin, int64_t end) {
  reference(AffineQuant<ScalarOps>{args}, dtype, x, y, mask, begin, end, args.layout);
}

void fp8_reference(const Fp8Args& args, DType dtype, const void* x, void* y, uint8_t* mask,
                   int64_t begin, int64_t end) {
  reference(Fp8Quant<ScalarOps>{args}, dtype, x, y, mask, begin, end, args.layout);
}

void masked_grad_reference(size_t elem_size, const void* grad_out, const uint8_t* mask,
                           void* grad_in, int64_t begin, int64_t end) {
  if (elem_size == 4) {
    masked_grad_scalar(static_cast<const uint32_t*>(grad_out), mask,
                       static_cast<uint32_t*>(grad_in), begin, end);
  } else {
    masked_grad_scalar(static_cast<const uint16_t*>(grad_out), mask,
                       static_cast<uint16_t*>(grad_in), begin, end);
  }
}

// LSQ backward, one element at a time, each term added to the double sums.
template <class E>
void lsq_one(const AffineArgs& args, const void* x, const void* g, void* gx, LsqSums sums,
             int64_t i) {
  const int64_t c = (i / args.layout.inner) % args.layout.channels;
  const auto p = make_affine_params<ScalarOps>(args.scale[c], args.zero_point[c], args.quant_min,
                                               args.quant_max);
  const auto t = lsq_backward_terms<ScalarOps>(E::load(static_cast<const typename E::T*>(x)[i]),
                                               E::load(static_cast<const typename E::T*>(g)[i]), p);
  static_cast<typename E::T*>(gx)[i] = E::store(t.grad_x);
  sums.scale_sum[c] += double(t.scale_term);
  sums.outside_sum[c] += double(t.outside_grad);
}

void lsq_range_reference(const AffineArgs& args, DType dtype, const void* x, const void* g,
                         void* gx, LsqSums sums, int64_t begin, int64_t end) {
  for_dtype(dtype, [&](auto e) {
    for (int64_t i = begin; i < end; ++i) lsq_one<decltype(e)>(args, x, g, gx, sums, i);
  });
}

void lsq_channels_reference(const AffineArgs& args, DType dtype, const void* x, const void* g,
                            void* gx, LsqSums sums, int64_t outer, int64_t c_begin,
                            int64_t c_end) {
  const auto& L = args.layout;
  for_dtype(dtype, [&](auto e) {
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t c = c_begin; c < c_end; ++c) {
        for (int64_t k = 0; k < L.inner; ++k) {
          lsq_one<decltype(e)>(args, x, g, gx, sums, (o * L.channels + c) * L.inner + k);
        }
      }
    }
  });
}

}  // namespace

FakeQuantKernels scalar_fake_quant_kernels() {
  return {Isa::kScalar,         &affine_reference,   &fp8_reference, &masked_grad_reference,
          &lsq_range_reference, &lsq_channels_reference};
}

}  // namespace torchqat::kernels
