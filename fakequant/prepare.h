// Validated, kernel-ready arguments of the fake-quant ops, with outputs
// allocated: the CPU and CUDA implementations differ only in how they run
// the kernel over them.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat {

struct FakeQuantCall {
  at::Tensor x;       // contiguous input
  at::Tensor output;  // contiguous, x's dtype
  at::Tensor mask;    // uint8 [ceil(numel / 8)], the STE bits
  at::Tensor scale;   // float32, contiguous: kernel parameters kept alive here
  at::Tensor zero_point;
  kernels::DType dtype;
  int64_t numel;
  const void* x_data() const { return x.const_data_ptr(); }
  void* output_data() { return output.mutable_data_ptr(); }
  uint8_t* mask_data() { return mask.mutable_data_ptr<uint8_t>(); }
};

struct AffineCall : FakeQuantCall {
  kernels::AffineArgs args;
};

struct Fp8Call : FakeQuantCall {
  kernels::Fp8Args args;
};

AffineCall prepare_affine(const at::Tensor& x, const at::Tensor& scale,
                          const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                          std::optional<int64_t> axis, std::optional<int64_t> group_size);

Fp8Call prepare_fp8(const at::Tensor& x, const at::Tensor& scale, c10::string_view fmt,
                    std::optional<int64_t> axis, std::optional<int64_t> group_size);

struct MaskedGradCall {
  at::Tensor grad;    // contiguous
  at::Tensor mask;
  at::Tensor output;  // contiguous, grad's dtype
  size_t elem_size;
  int64_t numel;
};

MaskedGradCall prepare_ste_backward(const at::Tensor& grad, const at::Tensor& mask);

// Outputs of the forward ops for given input sizes (also the Meta kernels).
at::Tensor mask_like(const at::Tensor& x);

}  // namespace torchqat
