// AVX2 variant of the fake-quant kernels (8 lanes). Compiled with
// -mavx2 -mfma -mf16c; called only when cpu_features().avx2.
#include <immintrin.h>

#include "avx2_ops.h"
#include "fake_quant_walk.h"
#include "lsq_walk.h"
#include "variants.h"

namespace torchqat::kernels {
namespace {

// Lane i keeps its gradient where bit i of the mask is set.
void masked_grad_avx2(size_t elem_size, const void* grad_out, const uint8_t* mask,
                      void* grad_in, int64_t begin, int64_t end) {
  int64_t i = begin;
  if (elem_size == 4) {
    const auto* g = static_cast<const uint32_t*>(grad_out);
    auto* out = static_cast<uint32_t*>(grad_in);
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (; i + 8 <= end; i += 8) {
      const __m256i bits = _mm256_and_si256(_mm256_set1_epi32(mask[i / 8]), lane_bit);
      const __m256i keep = _mm256_cmpeq_epi32(bits, lane_bit);
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + i));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_and_si256(v, keep));
    }
    masked_grad_scalar(g, mask, out, i, end);
  } else {
    const auto* g = static_cast<const uint16_t*>(grad_out);
    auto* out = static_cast<uint16_t*>(grad_in);
    const __m256i lane_bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048,
                                               4096, 8192, 16384, int16_t(-32768));
    for (; i + 16 <= end; i += 16) {
      const int16_t two_bytes = int16_t(mask[i / 8] | (mask[i / 8 + 1] << 8));
      const __m256i bits = _mm256_and_si256(_mm256_set1_epi16(two_bytes), lane_bit);
      const __m256i keep = _mm256_cmpeq_epi16(bits, lane_bit);
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + i));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_and_si256(v, keep));
    }
    masked_grad_scalar(g, mask, out, i, end);
  }
}

}  // namespace

FakeQuantKernels avx2_fake_quant_kernels() {
  return {Isa::kAvx2, &affine_fake_quant_range<Avx2Ops>, &fp8_fake_quant_range<Avx2Ops>,
          &masked_grad_avx2, &lsq_backward_range<Avx2Ops>, &lsq_backward_channels<Avx2Ops>};
}

}  // namespace torchqat::kernels
