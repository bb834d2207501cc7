// The compiled variants of the integer ops (GEMM, depthwise conv, GEMV, W4A8, quantize, uint8 add and max
// pool), one function per ISA TU.
#pragma once

#include "torchqat/kernels/add_u8.h"
#include "torchqat/kernels/depthwise_int8.h"
#include "torchqat/kernels/gemm_int8.h"
#include "torchqat/kernels/gemm_w4a8.h"
#include "torchqat/kernels/gemv_int4.h"
#include "torchqat/kernels/max_pool_u8.h"
#include "torchqat/kernels/quantize.h"

namespace torchqat::kernels {

// Rows [m0, m0 + rows) of the GEMM's activations copied to dst (row stride
// quad_stride >= k) with K zero-padded to whole quads of k, as the
// vpdpbusd and vpmaddubsw microkernels read them (gemm_int8_ref.cc).
void copy_rows_as_quads(const GemmInt8Args& args, int64_t m0, int64_t rows, int64_t quad_stride, uint8_t* dst);
// The row stride of such a copy: K rounded up to whole quads. (Defined out of
// line: an inline function compiled under several ISA flags is an ODR hazard.)
int64_t quad_stride(int64_t k_pairs);

GemmInt8Kernels avx2_gemm_int8_kernels();
GemmInt8Kernels avx512vnni_gemm_int8_kernels();  // run only where cpu_features().avx512_vnni
DepthwiseInt8Kernels avx2_depthwise_int8_kernels();
GemvInt4Kernels avx2_gemv_int4_kernels();
GemmW4A8Kernels avx2_gemm_w4a8_kernels();
GemmW4A8Kernels avx512vnni_gemm_w4a8_kernels();  // run only where cpu_features().avx512_vnni
QuantizeKernels avx2_quantize_kernels();
AddU8Kernels avx2_add_u8_kernels();
MaxPoolU8Kernels avx2_max_pool_u8_kernels();

}  // namespace torchqat::kernels
