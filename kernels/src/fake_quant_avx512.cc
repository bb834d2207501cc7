// AVX-512 variant of the fake-quant kernels (16 lanes). Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq; called only when
// cpu_features().avx512.
#include <immintrin.h>

#include <cstring>

#include "avx512_ops.h"
#include "fake_quant_walk.h"
#include "lsq_walk.h"
#include "variants.h"

namespace torchqat::kernels {
namespace {

// The mask bits are the AVX-512 lane mask as they are.
void masked_grad_avx512(size_t elem_size, const void* grad_out, const uint8_t* mask,
                        void* grad_in, int64_t begin, int64_t end) {
  int64_t i = begin;
  if (elem_size == 4) {
    const auto* g = static_cast<const uint32_t*>(grad_out);
    auto* out = static_cast<uint32_t*>(grad_in);
    for (; i + 16 <= end; i += 16) {
      uint16_t keep;
      std::memcpy(&keep, mask + i / 8, sizeof(keep));
      _mm512_storeu_si512(out + i, _mm512_maskz_loadu_epi32(keep, g + i));
    }
    masked_grad_scalar(g, mask, out, i, end);
  } else {
    const auto* g = static_cast<const uint16_t*>(grad_out);
    auto* out = static_cast<uint16_t*>(grad_in);
    for (; i + 32 <= end; i += 32) {
      uint32_t keep;
      std::memcpy(&keep, mask + i / 8, sizeof(keep));
      _mm512_storeu_si512(out + i, _mm512_maskz_loadu_epi16(keep, g + i));
    }
    masked_grad_scalar(g, mask, out, i, end);
  }
}

}  // namespace

FakeQuantKernels avx512_fake_quant_kernels() {
  return {Isa::kAvx512, &affine_fake_quant_range<Avx512Ops>, &fp8_fake_quant_range<Avx512Ops>,
          &masked_grad_avx512, &lsq_backward_range<Avx512Ops>, &lsq_backward_channels<Avx512Ops>};
}

}  // namespace torchqat::kernels
