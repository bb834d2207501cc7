// The compiled kernel variants, one function per ISA TU; the dispatchers
// list them in fake_quant_variants() and observer_variants().
#pragma once

#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/observe.h"

namespace torchqat::kernels {

FakeQuantKernels scalar_fake_quant_kernels();
FakeQuantKernels avx2_fake_quant_kernels();
FakeQuantKernels avx512_fake_quant_kernels();

ObserverKernels scalar_observer_kernels();
ObserverKernels avx2_observer_kernels();
ObserverKernels avx512_observer_kernels();

// AVX2 histogram insertion, also used by the AVX-512 variant.
int64_t histogram_add_avx2(DType dtype, const void* x, int64_t begin, int64_t end,
                           int64_t* counts, int64_t bins, double lo, double hi);

}  // namespace torchqat::kernels
