// What the running x86-64 CPU and OS support, read once from CPUID/XGETBV.
#pragma once

namespace torchqat::kernels {

struct CpuFeatures {
  bool avx2 = false;  // with FMA and F16C, which every AVX2 CPU we target has
  bool avx512 = false;  // F, BW, VL, DQ with the OS saving ZMM state
  bool avx512_vnni = false;
  bool avx_vnni = false;
};

const CpuFeatures& cpu_features();

}  // namespace torchqat::kernels
