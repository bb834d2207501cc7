// The compiled variants of the fake-quant kernels, one function per ISA TU.
// The dispatcher lists them in fake_quant_variants().
#pragma once

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels {

FakeQuantKernels scalar_fake_quant_kernels();
FakeQuantKernels avx2_fake_quant_kernels();
FakeQuantKernels avx512_fake_quant_kernels();

}  // namespace torchqat::kernels
