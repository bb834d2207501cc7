// The INT8 GEMM and INT4 GEMV variants, chosen by the active ISA: the widest compiled
// variant the active ISA can run (an AVX-512 machine runs the AVX2 GEMM until
// a VNNI variant exists).
#include "gemm_variants.h"
#include "torchqat/kernels/gemm_int8.h"

namespace torchqat::kernels {

const std::vector<GemmInt8Kernels>& gemm_int8_variants() {
  static const std::vector<GemmInt8Kernels> variants = {
    {Isa::kScalar, &gemm_int8_reference},
#if TORCHQAT_X86
    avx2_gemm_int8_kernels(),
#endif
  };
  return variants;
}

const GemmInt8Kernels& gemm_int8_kernels() {
  const Isa isa = active_isa();
  const GemmInt8Kernels* best = &gemm_int8_variants().front();
  for (const auto& v : gemm_int8_variants()) {
    if (static_cast<int>(v.isa) <= static_cast<int>(isa)) best = &v;
  }
  return *best;
}

const std::vector<GemvInt4Kernels>& gemv_int4_variants() {
  static const std::vector<GemvInt4Kernels> variants = {
    {Isa::kScalar, &gemv_int4_reference},
#if TORCHQAT_X86
    avx2_gemv_int4_kernels(),
#endif
  };
  return variants;
}

const GemvInt4Kernels& gemv_int4_kernels() {
  const Isa isa = active_isa();
  const GemvInt4Kernels* best = &gemv_int4_variants().front();
  for (const auto& v : gemv_int4_variants()) {
    if (static_cast<int>(v.isa) <= static_cast<int>(isa)) best = &v;
  }
  return *best;
}

}  // namespace torchqat::kernels
