// The compiled integer GEMM / GEMV variants, one function per ISA TU.
#pragma once

#include "torchqat/kernels/gemm_int8.h"
#include "torchqat/kernels/gemv_int4.h"

namespace torchqat::kernels {

GemmInt8Kernels avx2_gemm_int8_kernels();
GemvInt4Kernels avx2_gemv_int4_kernels();

}  // namespace torchqat::kernels
