// The compiled INT8 GEMM variants, one function per ISA TU.
#pragma once

#include "torchqat/kernels/gemm_int8.h"

namespace torchqat::kernels {

GemmInt8Kernels avx2_gemm_int8_kernels();

}  // namespace torchqat::kernels
