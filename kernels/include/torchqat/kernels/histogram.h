// Torch-free histogram calibration: a running histogram whose range grows
// without losing counts, and the searches that choose a clipping range from it.
//
// The histogram has `bins` equal bins over [lo, hi]. Widening keeps every old
// bin inside exactly one new bin: the new bin width is the old one times 2^k
// and the new lower edge lies a whole number of old bins below the old one,
// so counts merge exactly (no interpolation, no lost mass).
#pragma once

#include <cstdint>

#include "torchqat/kernels/fake_quant.h"

namespace torchqat::kernels {

struct HistogramRange {
  double lo;
  double hi;  // lo < hi once initialised
};

// The range for a first batch with finite extremes [xmin, xmax]: it holds
// zero, and its top edge lies strictly above xmax (one extra bin's width), so
// no value sits on the edge that becomes interior when the range grows.
HistogramRange histogram_initial_range(double xmin, double xmax, int64_t bins);

// Widens `range` (in place) to cover [xmin, xmax] (xmax strictly below hi), merging counts[bins] into the
// coarser bins. No-op when already covered.
void histogram_widen(int64_t* counts, int64_t bins, HistogramRange* range, double xmin,
                     double xmax);

// Adds the finite values of x[begin, end) to counts (values must lie in the
// range: widen first); returns how many were non-finite (skipped).
int64_t histogram_add(DType dtype, const void* x, int64_t begin, int64_t end, int64_t* counts,
                      int64_t bins, HistogramRange range);

// Clipping ranges [clip_lo, clip_hi] (clip_lo <= 0 <= clip_hi) chosen from a histogram.
struct ClipRange {
  double lo;
  double hi;
};

// The smallest range holding `percentile` % of the mass: of |x| when
// symmetric (-t, t), else the (100 - p) / 2 and (100 + p) / 2 percentiles of x.
ClipRange clip_percentile(const int64_t* counts, int64_t bins, HistogramRange range,
                          double percentile, bool symmetric);

// The range with the least expected squared quantization error for
// `levels` = quant_max - quant_min + 1 integer levels: clipping error of the
// values outside, plus step^2 / 12 per value inside (uniform rounding noise),
// with bin centres standing for their values. Candidates are bin edges.
ClipRange clip_mse(const int64_t* counts, int64_t bins, HistogramRange range, int64_t levels,
                   bool symmetric);

// TensorRT's entropy calibration: the |x| threshold minimising KL(P || Q) of
// the clipped distribution P and its quantisation Q onto `levels / 2` levels
// (`levels` when the histogram holds one sign only); clipped to its range.
ClipRange clip_entropy(const int64_t* counts, int64_t bins, HistogramRange range, int64_t levels);

// Expected squared error of quantizing the histogram with range `clip` and
// `levels` levels, under the model of clip_mse (for tests and reports).
double expected_quant_error(const int64_t* counts, int64_t bins, HistogramRange range,
                            ClipRange clip, int64_t levels);

}  // namespace torchqat::kernels
