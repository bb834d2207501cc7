// AVX512 variant of the observer kernels (see minmax_walk.h).
#include "avx512_ops.h"
#include "minmax_walk.h"
#include "variants.h"

namespace torchqat::kernels {

ObserverKernels avx512_observer_kernels() {
  return {Isa::kAvx512, &minmax_range<Avx512Ops>, &minmax_channels<Avx512Ops>,
          &histogram_add_avx2};
}

}  // namespace torchqat::kernels
