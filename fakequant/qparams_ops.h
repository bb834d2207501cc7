// Shared checks of the choose_qparams op's CPU, CUDA and Meta kernels.
#pragma once

#include <ATen/ATen.h>

namespace torchqat {

void check_ranges(const at::Tensor& min_val, const at::Tensor& max_val, int64_t quant_min,
                  int64_t quant_max);

}  // namespace torchqat
