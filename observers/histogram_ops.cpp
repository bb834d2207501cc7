// Histogram calibration ops (CPU): the running histogram and the clipping
// range searches of kernels/histogram.h. Calibration-time work: CUDA inputs
// are brought to the CPU by the Python observer.
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "fakequant/cpu_parallel.h"
#include "fakequant/qparams.h"
#include "torchqat/kernels/histogram.h"
#include "torchqat/kernels/observe.h"

namespace torchqat {
namespace {

constexpr const char* kObserve = "histogram_observe";

void check_state(const char* op, const at::Tensor& counts, const at::Tensor& range) {
  TORCH_CHECK(counts.is_cpu() && range.is_cpu(), op, ": counts and range must be CPU tensors");
  TORCH_CHECK(counts.scalar_type() == at::kLong && counts.dim() == 1 && counts.numel() >= 2 &&
                  counts.is_contiguous(),
              op, ": counts must be a contiguous 1-D int64 tensor of at least 2 bins, got ",
              counts.scalar_type(), " ", counts.sizes());
  TORCH_CHECK(range.scalar_type() == at::kDouble && range.numel() == 2 && range.is_contiguous(),
              op, ": range must be a contiguous float64 tensor of 2 values (lo, hi), got ",
              range.scalar_type(), " ", range.sizes());
}

// One read of a batch: its finite extremes and non-finite count and, when a
// range is given, its histogram over that range (values outside it land in
// the edge bins, so the caller keeps these counts only if the range covered
// the batch). Each thread walks its share tile by tile, min/max first, so the
// insertion re-reads a tile from cache rather than from memory.
struct BatchScan {
  float lo = INFINITY, hi = -INFINITY;
  int64_t nonfinite = 0;
  std::vector<int64_t> counts;
};

BatchScan scan_batch(const at::Tensor& x, int64_t bins, const kernels::HistogramRange* range) {
  const int64_t numel = x.numel();
  const auto dtype = kernel_dtype(x);
  const auto& k = kernels::observer_kernels();
  BatchScan total;
  if (range) total.counts.assign(size_t(bins), 0);
  std::mutex merge;
  at::parallel_for(0, numel, kTileElements, [&](int64_t begin, int64_t end) {
    BatchScan part;
    if (range) part.counts.assign(size_t(bins), 0);  // a table per thread's share, not per tile
    for (int64_t b = begin; b < end; b += kTileElements) {
      const int64_t e = std::min(end, b + kTileElements);
      k.minmax_range(dtype, x.const_data_ptr(), {1, numel}, {&part.lo, &part.hi, &part.nonfinite}, b, e);
      if (range) k.histogram_add(dtype, x.const_data_ptr(), b, e, part.counts.data(), bins, range->lo, range->hi);
    }
    const std::lock_guard<std::mutex> lock(merge);  // min, max and integer sums: any order is exact
    total.lo = std::min(total.lo, part.lo);
    total.hi = std::max(total.hi, part.hi);
    total.nonfinite += part.nonfinite;
    for (size_t i = 0; i < part.counts.size(); ++i) total.counts[i] += part.counts[i];
  });
  return total;
}

at::Tensor histogram_observe_cpu(const at::Tensor& x_in, at::Tensor& counts, at::Tensor& range) {
  check_input_dtype(kObserve, x_in);
  check_state(kObserve, counts, range);
  TORCH_CHECK(x_in.is_cpu(), kObserve, ": x must be on the CPU, got ", x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t bins = counts.numel();
  double* r = range.mutable_data_ptr<double>();
  int64_t* c = counts.mutable_data_ptr<int64_t>();
  kernels::HistogramRange current{r[0], r[1]};
  const bool started = current.lo < current.hi;
  // Once the range has settled, one pass does it all; a batch that widens
  // the range (or the first batch) is inserted again over the new range.
  BatchScan scan = scan_batch(x, bins, started ? &current : nullptr);
  const auto nonfinite = at::scalar_tensor(scan.nonfinite, at::TensorOptions().dtype(at::kLong));
  if (!(scan.lo <= scan.hi)) return nonfinite;  // nothing finite
  const bool covered = started && scan.lo >= current.lo && scan.hi < current.hi;
  if (!covered) {
    if (started) {
      kernels::histogram_widen(c, bins, &current, scan.lo, scan.hi);
    } else {
      current = kernels::histogram_initial_range(scan.lo, scan.hi, bins);
      std::fill(c, c + bins, 0);
    }
    r[0] = current.lo;
    r[1] = current.hi;
    scan = scan_batch(x, bins, &current);
  }
  for (int64_t b = 0; b < bins; ++b) c[b] += scan.counts[size_t(b)];
  return nonfinite;
}

at::Tensor histogram_clip_range_cpu(const at::Tensor& counts, const at::Tensor& range,
                                    c10::string_view method, int64_t quant_min, int64_t quant_max,
                                    bool symmetric, double percentile) {
  constexpr const char* op = "histogram_clip_range";
  check_state(op, counts, range);
  check_quant_range(op, quant_min, quant_max);
  const double* r = range.const_data_ptr<double>();
  TORCH_CHECK(r[0] < r[1], op, ": the histogram is empty (has the observer seen finite data?)");
  const kernels::HistogramRange hr{r[0], r[1]};
  const int64_t* c = counts.const_data_ptr<int64_t>();
  const int64_t bins = counts.numel(), levels = quant_max - quant_min + 1;
  kernels::ClipRange clip;
  if (method == "percentile") {
    TORCH_CHECK(percentile > 0.0 && percentile <= 100.0, op,
                ": percentile must be in (0, 100], got ", percentile);
    clip = kernels::clip_percentile(c, bins, hr, percentile, symmetric);
  } else if (method == "mse") {
    clip = kernels::clip_mse(c, bins, hr, levels, symmetric);
  } else if (method == "entropy") {
    clip = kernels::clip_entropy(c, bins, hr, levels);
  } else {
    TORCH_CHECK(false, op, ": method must be \"percentile\", \"mse\" or \"entropy\", got \"",
                std::string(method), "\"");
  }
  return at::tensor({clip.lo, clip.hi}, at::TensorOptions().dtype(at::kDouble));
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("histogram_observe", &histogram_observe_cpu);
  m.impl("histogram_clip_range", &histogram_clip_range_cpu);
}

}  // namespace torchqat
