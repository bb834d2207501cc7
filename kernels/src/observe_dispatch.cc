// The observer kernel variants, chosen by the same active ISA as the
// fake-quant kernels.
#include "torchqat/kernels/observe.h"
#include "variants.h"

namespace torchqat::kernels {

const std::vector<ObserverKernels>& observer_variants() {
  static const std::vector<ObserverKernels> variants = {
    scalar_observer_kernels(),
#if TORCHQAT_X86
    avx2_observer_kernels(), avx512_observer_kernels(),
#endif
  };
  return variants;
}

const ObserverKernels& observer_kernels() {
  const Isa isa = active_isa();
  for (const auto& v : observer_variants()) {
    if (v.isa == isa) return v;
  }
  return observer_variants().front();
}

}  // namespace torchqat::kernels
