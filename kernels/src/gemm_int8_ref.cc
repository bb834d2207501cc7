// INT8 GEMM: weight packing, the shared epilogue and the scalar reference.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "gemm_variants.h"
#include "torchqat/kernels/gemm_int8.h"

namespace torchqat::kernels {

void pack_int8_weights(const int8_t* b, int64_t n, int64_t k, int64_t ldb, int8_t* data,
                       int32_t* col_sums) {
  const int64_t k_pairs = packed_k_pairs(k);
  std::fill(data, data + packed_bytes(n, k), int8_t{0});
  for (int64_t col = 0; col < n; ++col) {
    const int64_t panel = col / kPanel, lane = col % kPanel;
    int32_t sum = 0;
    for (int64_t kk = 0; kk < k; ++kk) {
      const int8_t w = b[col * ldb + kk];
      sum += w;
      data[((panel * k_pairs + kk / 2) * kPanel + lane) * 2 + kk % 2] = w;
    }
    col_sums[col] = sum;
  }
}

void gemm_epilogue(const GemmInt8Args& args, int64_t m, int64_t n, int32_t acc) {
  const int64_t at = m * args.ldc + n;
  if (args.output == GemmOutput::kInt32) {
    static_cast<int32_t*>(args.out)[at] = acc;
    return;
  }
  float v = float(acc) * args.multiplier[n];
  if (args.bias) v = v + args.bias[n];
  if (args.output == GemmOutput::kFloat) {
    static_cast<float*>(args.out)[at] = args.relu ? std::max(v, 0.0f) : v;
    return;
  }
  const float q = std::nearbyint(v * args.inv_out_scale) + float(args.out_zero);
  const float lo = args.relu ? float(args.out_zero) : 0.0f;
  static_cast<uint8_t*>(args.out)[at] = uint8_t(std::clamp(q, lo, 255.0f));
}

void gemm_int8_reference(const GemmInt8Args& args, int64_t m_begin, int64_t m_end, int64_t p_begin,
                         int64_t p_end) {
  const PackedInt8View& b = args.b;
  for (int64_t m = m_begin; m < m_end; ++m) {
    for (int64_t n = p_begin * kPanel; n < std::min(p_end * kPanel, b.n); ++n) {
      const int64_t panel = n / kPanel, lane = n % kPanel;
      int64_t acc = 0;
      for (int64_t kk = 0; kk < b.k; ++kk) {
        const int64_t w = b.data[((panel * b.k_pairs() + kk / 2) * kPanel + lane) * 2 + kk % 2];
        acc += (int64_t(args.a[m * args.lda + kk]) - args.a_zero) * w;
      }
      gemm_epilogue(args, m, n, int32_t(acc));
    }
  }
}

int64_t quad_stride(int64_t k_pairs) { return (k_pairs + 1) / 2 * 4; }

void copy_rows_as_quads(const GemmInt8Args& args, int64_t m0, int64_t rows, int64_t quad_stride, uint8_t* dst) {
  for (int64_t r = 0; r < rows; ++r, dst += quad_stride) {
    std::memcpy(dst, args.a + (m0 + r) * args.lda, size_t(args.b.k));
    std::memset(dst + args.b.k, 0, size_t(quad_stride - args.b.k));
  }
}

}  // namespace torchqat::kernels
