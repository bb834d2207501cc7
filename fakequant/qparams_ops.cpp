// choose_qparams: (scale, zero_point) from observed ranges, elementwise, with
// the formula of quant_math.h (CPU and Meta; CUDA in qparams_ops_cuda.cpp).
#include <c10/util/irange.h>
#include <torch/library.h>

#include <cmath>

#include "fakequant/qparams.h"
#include "fakequant/qparams_ops.h"
#include "torchqat/kernels/quant_math.h"

namespace torchqat {

constexpr const char* kOp = "choose_qparams";

void check_ranges(const at::Tensor& min_val, const at::Tensor& max_val, int64_t quant_min,
                  int64_t quant_max) {
  check_quant_range(kOp, quant_min, quant_max);
  check_same_device(kOp, min_val, "min_val", max_val, "max_val");
  TORCH_CHECK(at::isFloatingType(min_val.scalar_type()) && at::isFloatingType(max_val.scalar_type()),
              kOp, ": min_val and max_val must be floating-point tensors, got ",
              min_val.scalar_type(), " and ", max_val.scalar_type());
  TORCH_CHECK(min_val.sizes() == max_val.sizes(), kOp, ": min_val ", min_val.sizes(),
              " and max_val ", max_val.sizes(), " must have the same shape");
}

namespace {

std::tuple<at::Tensor, at::Tensor> choose_qparams_cpu(const at::Tensor& min_val,
                                                      const at::Tensor& max_val,
                                                      int64_t quant_min, int64_t quant_max,
                                                      bool symmetric) {
  check_ranges(min_val, max_val, quant_min, quant_max);
  const at::Tensor lo = min_val.detach().to(at::kFloat).contiguous();
  const at::Tensor hi = max_val.detach().to(at::kFloat).contiguous();
  at::Tensor scale = at::empty(lo.sizes(), lo.options());
  at::Tensor zero_point = at::empty(lo.sizes(), lo.options().dtype(at::kInt));
  const float* l = lo.const_data_ptr<float>();
  const float* h = hi.const_data_ptr<float>();
  float* s = scale.mutable_data_ptr<float>();
  int32_t* z = zero_point.mutable_data_ptr<int32_t>();
  for (const auto i : c10::irange(lo.numel())) {
    TORCH_CHECK(std::isfinite(l[i]) && std::isfinite(h[i]) && l[i] <= h[i], kOp,
                ": the range at index ", i, " is [", l[i], ", ", h[i],
                "]; it must be finite with min_val <= max_val (has the observer seen data?)");
    const auto q = kernels::choose_qparams(l[i], h[i], quant_min, quant_max, symmetric);
    s[i] = q.scale;
    z[i] = q.zero_point;
  }
  return {scale, zero_point};
}

std::tuple<at::Tensor, at::Tensor> choose_qparams_meta(const at::Tensor& min_val,
                                                       const at::Tensor& max_val,
                                                       int64_t quant_min, int64_t quant_max,
                                                       bool /*symmetric*/) {
  check_ranges(min_val, max_val, quant_min, quant_max);
  return {at::empty_symint(min_val.sym_sizes(), min_val.options().dtype(at::kFloat)),
          at::empty_symint(min_val.sym_sizes(), min_val.options().dtype(at::kInt))};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) { m.impl("choose_qparams", &choose_qparams_cpu); }
TORCH_LIBRARY_IMPL(torchqat, Meta, m) { m.impl("choose_qparams", &choose_qparams_meta); }

}  // namespace torchqat
