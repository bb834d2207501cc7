// The INT8 GEMM, INT8 depthwise conv, INT4 GEMV, W4A8, uint8 quantize,
// uint8 add and uint8 max pool variants, chosen by the active ISA: the widest
// compiled variant the active ISA can run. The INT8 GEMM's AVX-512 variant needs VNNI
// too (as the W4A8 one): each is listed only on CPUs that have it (an AVX-512
// CPU without VNNI runs the AVX2 kernels).
#include "gemm_variants.h"
#include "torchqat/kernels/cpu_features.h"
#include "torchqat/kernels/gemm_int8.h"

namespace torchqat::kernels {
namespace {

// The widest variant of a list (ordered by ISA) that the active ISA can run.
template <class Kernels>
const Kernels& widest_runnable(const std::vector<Kernels>& variants) {
  const Isa isa = active_isa();
  const Kernels* best = &variants.front();
  for (const auto& v : variants) {
    if (static_cast<int>(v.isa) <= static_cast<int>(isa)) best = &v;
  }
  return *best;
}

}  // namespace

const std::vector<GemmInt8Kernels>& gemm_int8_variants() {
  static const std::vector<GemmInt8Kernels> variants = [] {
    std::vector<GemmInt8Kernels> v = {{Isa::kScalar, &gemm_int8_reference}};
#if TORCHQAT_X86
    v.push_back(avx2_gemm_int8_kernels());
    if (cpu_features().avx512_vnni) v.push_back(avx512vnni_gemm_int8_kernels());
#endif
    return v;
  }();
  return variants;
}

const GemmInt8Kernels& gemm_int8_kernels() { return widest_runnable(gemm_int8_variants()); }

const std::vector<DepthwiseInt8Kernels>& depthwise_int8_variants() {
  static const std::vector<DepthwiseInt8Kernels> variants = {
    {Isa::kScalar, &depthwise_int8_reference},
#if TORCHQAT_X86
    avx2_depthwise_int8_kernels(),
#endif
  };
  return variants;
}

const DepthwiseInt8Kernels& depthwise_int8_kernels() { return widest_runnable(depthwise_int8_variants()); }

const std::vector<GemvInt4Kernels>& gemv_int4_variants() {
  static const std::vector<GemvInt4Kernels> variants = {
    {Isa::kScalar, &gemv_int4_reference},
#if TORCHQAT_X86
    avx2_gemv_int4_kernels(),
#endif
  };
  return variants;
}

const GemvInt4Kernels& gemv_int4_kernels() { return widest_runnable(gemv_int4_variants()); }

const std::vector<GemmW4A8Kernels>& gemm_w4a8_variants() {
  static const std::vector<GemmW4A8Kernels> variants = [] {
    std::vector<GemmW4A8Kernels> v = {{Isa::kScalar, &gemm_w4a8_reference}};
#if TORCHQAT_X86
    v.push_back(avx2_gemm_w4a8_kernels());
    if (cpu_features().avx512_vnni) v.push_back(avx512vnni_gemm_w4a8_kernels());
#endif
    return v;
  }();
  return variants;
}

const GemmW4A8Kernels& gemm_w4a8_kernels() { return widest_runnable(gemm_w4a8_variants()); }

const std::vector<QuantizeKernels>& quantize_variants() {
  static const std::vector<QuantizeKernels> variants = {
    {Isa::kScalar, &quantize_u8_reference},
#if TORCHQAT_X86
    avx2_quantize_kernels(),
#endif
  };
  return variants;
}

const QuantizeKernels& quantize_kernels() { return widest_runnable(quantize_variants()); }

const std::vector<AddU8Kernels>& add_u8_variants() {
  static const std::vector<AddU8Kernels> variants = {
    {Isa::kScalar, &add_u8_to_float_reference, &add_u8_to_u8_reference},
#if TORCHQAT_X86
    avx2_add_u8_kernels(),
#endif
  };
  return variants;
}

const AddU8Kernels& add_u8_kernels() { return widest_runnable(add_u8_variants()); }

const std::vector<MaxPoolU8Kernels>& max_pool_u8_variants() {
  static const std::vector<MaxPoolU8Kernels> variants = {
    {Isa::kScalar, &max_pool_u8_reference},
#if TORCHQAT_X86
    avx2_max_pool_u8_kernels(),
#endif
  };
  return variants;
}

const MaxPoolU8Kernels& max_pool_u8_kernels() { return widest_runnable(max_pool_u8_variants()); }

}  // namespace torchqat::kernels
