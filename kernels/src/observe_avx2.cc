// AVX2 variant of the observer kernels (see minmax_walk.h).
#include "avx2_ops.h"
#include "minmax_walk.h"
#include "variants.h"

namespace torchqat::kernels {

ObserverKernels avx2_observer_kernels() {
  return {Isa::kAvx2, &minmax_range<Avx2Ops>, &minmax_channels<Avx2Ops>};
}

}  // namespace torchqat::kernels
