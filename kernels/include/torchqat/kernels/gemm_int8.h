// Torch-free INT8 GEMM for the deployed model's Linear layers:
//
//   acc[m, n] = sum_k (a[m, k] - a_zero) * b[n, k]          (exact, int32)
//
// a: uint8 activations, row-major; b: int8 weights [N, K] (a Linear's weight),
// symmetric (zero point 0). The weights are packed once (at export) into the
// layout the microkernels read: int8 pairs (b[n, 2j], b[n, 2j + 1]) for
// panels of kPanel consecutive output columns (32 bytes per panel and pair),
// K padded to even and N to a whole panel with zeros; the packing also keeps
// each column's sum, so the activation zero point costs one multiply-add per
// output.
//
// Products are formed by vpmaddwd on int16 (u8 and s8 widened in registers),
// whose int32 pair sums cannot overflow: 255 * 128 * 2 < 2^31; by vpdpbusd
// (VNNI); or, on AVX2 for rows whose activations are all below 128, by
// vpmaddubsw, whose int16 pair sums then cannot saturate. The int32
// accumulator holds K <= kMaxK terms exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels {

inline constexpr int64_t kPanel = 16;             // output columns per packed panel
inline constexpr int64_t kMaxK = int64_t{1} << 16;  // 255 * 128 * 2^16 < 2^31

inline int64_t packed_k_pairs(int64_t k) { return (k + 1) / 2; }
inline int64_t packed_panels(int64_t n) { return (n + kPanel - 1) / kPanel; }
inline int64_t packed_bytes(int64_t n, int64_t k) { return packed_panels(n) * packed_k_pairs(k) * kPanel * 2; }

// Packed weights as the kernels read them (storage owned by the caller).
struct PackedInt8View {
  const int8_t* data = nullptr;       // [panels][k_pairs][kPanel][2]
  const int32_t* col_sums = nullptr;  // [n]: sum_k b[n, k]
  int64_t n = 0, k = 0;
  int64_t k_pairs() const { return packed_k_pairs(k); }
  int64_t panels() const { return packed_panels(n); }
};

// Packs b[n, k] (row stride ldb) into data[packed_bytes(n, k)] and
// col_sums[n].
void pack_int8_weights(const int8_t* b, int64_t n, int64_t k, int64_t ldb, int8_t* data,
                       int32_t* col_sums);

// Owning packed weights (tests, benchmarks).
struct PackedInt8Weights {
  std::vector<int8_t> data;
  std::vector<int32_t> col_sums;
  int64_t n = 0, k = 0;
  PackedInt8Weights(const int8_t* b, int64_t n_, int64_t k_, int64_t ldb)
      : data(size_t(packed_bytes(n_, k_))), col_sums(size_t(n_)), n(n_), k(k_) {
    pack_int8_weights(b, n, k, ldb, data.data(), col_sums.data());
  }
  PackedInt8View view() const { return {data.data(), col_sums.data(), n, k}; }
};

// What the GEMM writes for each acc[m, n]:
//   kInt32:  acc itself;
//   kFloat:  v = float(acc) * multiplier[n] + bias[n]  (multiplier = a_scale * b_scale[n]);
//   kUint8:  clamp(out_zero + round_half_even(v * inv_out_scale), lo, 255), lo = out_zero
//            with ReLU, else 0. The float requantization rounds as fake_quantize does
//            (x * (1 / scale), half to even), so an exported layer reproduces the QAT
//            model's fake-quantized output where the float math agrees.
enum class GemmOutput { kInt32, kFloat, kUint8 };

struct GemmInt8Args {
  const uint8_t* a = nullptr;
  int64_t lda = 0;
  int32_t a_zero = 0;
  PackedInt8View b;
  int64_t m = 0;
  GemmOutput output = GemmOutput::kInt32;
  const float* multiplier = nullptr;  // [n], kFloat / kUint8
  const float* bias = nullptr;        // [n] or nullptr
  bool relu = false;                  // kFloat: max(v, 0); kUint8: lo = out_zero
  float inv_out_scale = 1.0f;         // kUint8
  int32_t out_zero = 0;               // kUint8
  void* out = nullptr;                // int32 / float / uint8 [m, ldc]
  int64_t ldc = 0;
};

// Computes rows [m_begin, m_end) x panels [p_begin, p_end) of the output.
using GemmInt8Fn = void (*)(const GemmInt8Args& args, int64_t m_begin, int64_t m_end,
                            int64_t p_begin, int64_t p_end);

struct GemmInt8Kernels {
  Isa isa;
  GemmInt8Fn gemm;
};

// The reference: int64 sums, the epilogue written out once (gemm_epilogue).
void gemm_int8_reference(const GemmInt8Args& args, int64_t m_begin, int64_t m_end, int64_t p_begin,
                         int64_t p_end);

// One output value from its int32 accumulator (the epilogue every variant uses).
void gemm_epilogue(const GemmInt8Args& args, int64_t m, int64_t n, int32_t acc);

// Every compiled variant, reference first; the active ISA's variant.
const std::vector<GemmInt8Kernels>& gemm_int8_variants();
const GemmInt8Kernels& gemm_int8_kernels();

}  // namespace torchqat::kernels
