// Run-time choice among the compiled fake-quant variants.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "torchqat/kernels/cpu_features.h"
#include "torchqat/kernels/fake_quant.h"
#include "variants.h"

namespace torchqat::kernels {
namespace {

const FakeQuantKernels* find_variant(Isa isa) {
  for (const auto& v : fake_quant_variants()) {
    if (v.isa == isa) return &v;
  }
  return nullptr;
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (name == isa_name(isa)) return isa;
  }
  throw std::invalid_argument("torchqat: unknown ISA '" + name +
                              "'; expected one of: scalar, avx2, avx512");
}

const FakeQuantKernels* checked_variant(const std::string& name) {
  const Isa isa = parse_isa(name);
  if (!isa_supported(isa)) {
    throw std::invalid_argument("torchqat: ISA '" + name + "' is not supported by this CPU");
  }
  return find_variant(isa);
}

const FakeQuantKernels* best_supported() {
  if (const char* forced = std::getenv("TORCHQAT_ISA"); forced && *forced) {
    return checked_variant(forced);
  }
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    if (isa_supported(isa)) return find_variant(isa);
  }
  return find_variant(Isa::kScalar);
}

std::atomic<const FakeQuantKernels*>& active() {
  static std::atomic<const FakeQuantKernels*> kernels{best_supported()};
  return kernels;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

const std::vector<FakeQuantKernels>& fake_quant_variants() {
  static const std::vector<FakeQuantKernels> variants = {
    scalar_fake_quant_kernels(),
#if TORCHQAT_X86
    avx2_fake_quant_kernels(), avx512_fake_quant_kernels(),
#endif
  };
  return variants;
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return TORCHQAT_X86 && cpu_features().avx2;
    case Isa::kAvx512:
      return TORCHQAT_X86 && cpu_features().avx512;
  }
  return false;
}

const FakeQuantKernels& fake_quant_kernels() { return *active().load(std::memory_order_acquire); }

void set_isa(const std::string& name) {
  active().store(checked_variant(name), std::memory_order_release);
}

Isa active_isa() { return fake_quant_kernels().isa; }

}  // namespace torchqat::kernels
