// Torch-free fake-quantization kernels: raw pointers and sizes in, results out.
//
// A tensor is seen flat, as a sequence of runs of `inner` elements; run r uses
// quantization parameters r % channels. That one layout covers per-tensor
// (channels = 1, inner = numel), per-channel along an axis (channels =
// size(axis), inner = product of the sizes after it) and per-group along the
// last dim (channels = numel / group, inner = group).
//
// Every kernel also writes the straight-through mask, one bit per element
// (bit i % 8 of byte i / 8, set where the value was inside the range); the
// backward pass needs nothing else.
//
// Callers check arguments (the ATen layer does); kernels assume:
//   scale > 0 and finite, zero_point integer-valued within [quant_min, quant_max],
//   quant_min < quant_max, |quant_min|, |quant_max| <= 2^24,
//   begin % 8 == 0 (so threads never share a mask byte), begin <= end <= numel.
// Mask bits past `end` in its byte are left as they were: callers zero the
// last byte when numel % 8 != 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels {

enum class DType : uint8_t { kFloat32, kFloat16, kBFloat16 };

inline size_t element_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

struct ChannelLayout {
  int64_t channels;
  int64_t inner;
};

struct AffineArgs {
  const float* scale;       // [channels]
  const float* zero_point;  // [channels], integer-valued
  float quant_min;
  float quant_max;
  ChannelLayout layout;
};

struct Fp8Args {
  const float* scale;  // [channels]
  Fp8Format format;
  ChannelLayout layout;
};

inline int64_t mask_bytes(int64_t numel) { return (numel + 7) / 8; }

// y[i] = fake_quant(x[i]) and mask bit i, for flat i in [begin, end).
// x and y have dtype `dtype`; y may alias x; mask may be null (no STE mask).
using AffineFakeQuantFn = void (*)(const AffineArgs& args, DType dtype, const void* x, void* y,
                                   uint8_t* mask, int64_t begin, int64_t end);
using Fp8FakeQuantFn = void (*)(const Fp8Args& args, DType dtype, const void* x, void* y,
                                uint8_t* mask, int64_t begin, int64_t end);
// grad_in[i] = mask bit i ? grad_out[i] : 0, for elements of `elem_size`
// bytes (2 or 4). A select, not a product: NaN/Inf gradients outside the
// range do not leak through.
using MaskedGradFn = void (*)(size_t elem_size, const void* grad_out, const uint8_t* mask,
                              void* grad_in, int64_t begin, int64_t end);

// LSQ / LSQ+ backward (see quant_math.h). zero_point holds the rounded,
// clamped zero points the forward used. Per channel c, the kernels add to
// scale_sum[c] the sum of grad * dy/dscale and to outside_sum[c] the sum of
// grad over clamped elements, accumulated in double (float lanes are flushed
// into it at fixed points, so the sums are the same whatever the threading).
struct LsqSums {
  double* scale_sum;    // [channels]
  double* outside_sum;  // [channels]
};

// grad_x and the sums for flat i in [begin, end); grad and grad_x have x's dtype.
using LsqBackwardRangeFn = void (*)(const AffineArgs& args, DType dtype, const void* x,
                                    const void* grad, void* grad_x, LsqSums sums, int64_t begin,
                                    int64_t end);
// grad_x and the sums for every element of channels [c_begin, c_end), over all
// `outer` = numel / (channels * inner) slices; each channel's sum is complete.
using LsqBackwardChannelsFn = void (*)(const AffineArgs& args, DType dtype, const void* x,
                                       const void* grad, void* grad_x, LsqSums sums,
                                       int64_t outer, int64_t c_begin, int64_t c_end);

enum class Isa : uint8_t { kScalar, kAvx2, kAvx512 };

const char* isa_name(Isa isa);

// One compiled implementation of every fake-quant kernel.
struct FakeQuantKernels {
  Isa isa;
  AffineFakeQuantFn affine;
  Fp8FakeQuantFn fp8;
  MaskedGradFn masked_grad;
  LsqBackwardRangeFn lsq_backward_range;
  LsqBackwardChannelsFn lsq_backward_channels;
};

// Every variant compiled into this build, scalar reference first. Tests and
// benchmarks iterate over this list, so a new variant is covered by both.
const std::vector<FakeQuantKernels>& fake_quant_variants();

// Whether this CPU (and OS) can run the variant.
bool isa_supported(Isa isa);

// The variant used by the ops: the best supported one, or the one named by
// the TORCHQAT_ISA environment variable / set_isa() ("scalar", "avx2",
// "avx512").
const FakeQuantKernels& fake_quant_kernels();

// Forces a variant (tests, benchmarks). Throws std::invalid_argument for an
// unknown name or an ISA this CPU lacks.
void set_isa(const std::string& name);
Isa active_isa();

}  // namespace torchqat::kernels
