// AVX2 variant of the uint8 quantization (32 values per step). Compiled with
// -mavx2 -mfma; called only when cpu_features().avx2.
#include <immintrin.h>

#include "avx2_ops.h"
#include "gemm_variants.h"
#include "torchqat/kernels/quant_math.h"

namespace torchqat::kernels {
namespace {

// Eight clamped q as int32 lanes. _mm256_max_ps returns its second operand
// when either is NaN, so NaN becomes qmin as in the reference.
inline __m256i quantize8(const float* x, __m256 inv_scale, __m256 zero_point, __m256 qmin, __m256 qmax) {
  const __m256 q = _mm256_add_ps(Avx2Ops::round_even(_mm256_mul_ps(_mm256_loadu_ps(x), inv_scale)), zero_point);
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(q, qmin), qmax));
}

void quantize_u8_avx2(const float* x, const QuantizeU8Args& args, uint8_t* out, int64_t begin, int64_t end) {
  const __m256 inv_scale = _mm256_set1_ps(reciprocal_scale(args.scale));
  const __m256 zero_point = _mm256_set1_ps(args.zero_point);
  const __m256 qmin = _mm256_set1_ps(args.qmin), qmax = _mm256_set1_ps(args.qmax);
  // packs interleave 128-bit lanes; this permutation puts the bytes back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = begin;
  for (; i + 32 <= end; i += 32) {
    const __m256i a = quantize8(x + i, inv_scale, zero_point, qmin, qmax);
    const __m256i b = quantize8(x + i + 8, inv_scale, zero_point, qmin, qmax);
    const __m256i c = quantize8(x + i + 16, inv_scale, zero_point, qmin, qmax);
    const __m256i d = quantize8(x + i + 24, inv_scale, zero_point, qmin, qmax);
    const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  quantize_u8_reference(x, args, out, i, end);
}

}  // namespace

QuantizeKernels avx2_quantize_kernels() { return {Isa::kAvx2, &quantize_u8_avx2}; }

}  // namespace torchqat::kernels
