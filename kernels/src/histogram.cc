#include "torchqat/kernels/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "elements.h"

namespace torchqat::kernels {
namespace {

double bin_width(int64_t bins, HistogramRange r) { return (r.hi - r.lo) / double(bins); }

double centre(int64_t i, int64_t bins, HistogramRange r) {
  return r.lo + (double(i) + 0.5) * bin_width(bins, r);
}

// Two interleaved tile-local histograms (uint32: a call covers one tile):
// runs of equal values, such as ReLU's zeros, would otherwise chain every
// increment on the store to the same counter just before it.
template <class E>
int64_t add_values(const void* x, int64_t begin, int64_t end, int64_t* counts, int64_t bins,
                   HistogramRange r) {
  const auto* p = static_cast<const typename E::T*>(x);
  const double scale = double(bins) / (r.hi - r.lo);
  std::vector<uint32_t> even(size_t(bins), 0), odd(size_t(bins), 0);
  int64_t nonfinite = 0;
  const auto add = [&](std::vector<uint32_t>& h, int64_t i) {
    const double v = E::load(p[i]);
    if (!std::isfinite(v)) {
      ++nonfinite;
      return;
    }
    ++h[size_t(std::clamp<int64_t>(int64_t((v - r.lo) * scale), 0, bins - 1))];
  };
  const auto flush = [&] {
    for (int64_t b = 0; b < bins; ++b) {
      counts[b] += int64_t(even[size_t(b)]) + int64_t(odd[size_t(b)]);
      even[size_t(b)] = odd[size_t(b)] = 0;
    }
  };
  constexpr int64_t kFlushEvery = int64_t{1} << 31;  // before a uint32 counter can overflow
  for (int64_t chunk = begin; chunk < end; chunk += kFlushEvery) {
    const int64_t chunk_end = std::min(end, chunk + kFlushEvery);
    int64_t i = chunk;
    for (; i + 2 <= chunk_end; i += 2) {
      add(even, i);
      add(odd, i + 1);
    }
    if (i < chunk_end) add(even, i);
    flush();
  }
  return nonfinite;
}

// Prefix sums over bins of count, count * centre, count * centre^2: the squared
// clipping error of every bin below (or above) an edge in O(1).
struct Moments {
  std::vector<double> n, s1, s2;  // [bins + 1], sums over bins [0, i)
  Moments(const int64_t* counts, int64_t bins, HistogramRange r)
      : n(size_t(bins + 1), 0.0), s1(n.size(), 0.0), s2(n.size(), 0.0) {
    for (int64_t i = 0; i < bins; ++i) {
      const double c = centre(i, bins, r), k = double(counts[i]);
      n[size_t(i + 1)] = n[size_t(i)] + k;
      s1[size_t(i + 1)] = s1[size_t(i)] + k * c;
      s2[size_t(i + 1)] = s2[size_t(i)] + k * c * c;
    }
  }
  // sum over bins [i, j) of count * (centre - v)^2
  double squared_distance(int64_t i, int64_t j, double v) const {
    const double nn = n[size_t(j)] - n[size_t(i)], a = s1[size_t(j)] - s1[size_t(i)],
                 b = s2[size_t(j)] - s2[size_t(i)];
    return b - 2.0 * v * a + v * v * nn;
  }
};

// First bin whose centre is >= a; first bin whose centre is > b.
int64_t first_centre_at_or_above(double a, int64_t bins, HistogramRange r) {
  const double k = std::ceil((a - r.lo) / bin_width(bins, r) - 0.5);
  return std::clamp<int64_t>(int64_t(k), 0, bins);
}
int64_t first_centre_above(double b, int64_t bins, HistogramRange r) {
  const double k = std::floor((b - r.lo) / bin_width(bins, r) - 0.5) + 1.0;
  return std::clamp<int64_t>(int64_t(k), 0, bins);
}

double model_error(const Moments& m, int64_t bins, HistogramRange r, double a, double b,
                   int64_t levels) {
  const int64_t ia = first_centre_at_or_above(a, bins, r);
  const int64_t ib = std::max(ia, first_centre_above(b, bins, r));
  const double step = (b - a) / double(levels - 1);
  const double inside = m.n[size_t(ib)] - m.n[size_t(ia)];
  return m.squared_distance(0, ia, a) + m.squared_distance(ib, bins, b) +
         inside * step * step / 12.0;
}

ClipRange holding_zero(double lo, double hi) { return {std::min(lo, 0.0), std::max(hi, 0.0)}; }

}  // namespace

HistogramRange histogram_initial_range(double xmin, double xmax, int64_t bins) {
  double lo = std::min(xmin, 0.0), hi = std::max(xmax, 0.0);
  if (!(hi > lo)) hi = lo + 1e-7;  // an all-zero batch
  return {lo, hi + (hi - lo) / double(bins - 1)};
}

void histogram_widen(int64_t* counts, int64_t bins, HistogramRange* range, double xmin,
                     double xmax) {
  if (xmin >= range->lo && xmax < range->hi) return;
  const double w = bin_width(bins, *range);
  const int64_t prepend = xmin < range->lo ? int64_t(std::ceil((range->lo - xmin) / w)) : 0;
  const int64_t append = xmax >= range->hi ? int64_t(std::floor((xmax - range->hi) / w)) + 1 : 0;
  int shift = 0;
  while ((bins << shift) < prepend + bins + append) ++shift;
  std::vector<int64_t> merged(size_t(bins), 0);
  for (int64_t i = 0; i < bins; ++i) merged[size_t((prepend + i) >> shift)] += counts[i];
  std::copy(merged.begin(), merged.end(), counts);
  const double lo = range->lo - double(prepend) * w;
  range->lo = lo;
  range->hi = lo + double(bins) * w * double(int64_t{1} << shift);
}

int64_t histogram_add(DType dtype, const void* x, int64_t begin, int64_t end, int64_t* counts,
                      int64_t bins, HistogramRange range) {
  switch (dtype) {
    case DType::kFloat16:
      return add_values<F16>(x, begin, end, counts, bins, range);
    case DType::kBFloat16:
      return add_values<BF16>(x, begin, end, counts, bins, range);
    case DType::kFloat32:
      break;
  }
  return add_values<F32>(x, begin, end, counts, bins, range);
}

ClipRange clip_percentile(const int64_t* counts, int64_t bins, HistogramRange r,
                          double percentile, bool symmetric) {
  double total = 0;
  for (int64_t i = 0; i < bins; ++i) total += double(counts[i]);
  const double w = bin_width(bins, r);
  if (symmetric) {
    // Walk bins in order of |centre| (outwards from zero), stop at the mass.
    int64_t left = first_centre_at_or_above(0.0, bins, r) - 1, right = left + 1;
    double mass = 0, t = 0;
    const double target = percentile / 100.0 * total;
    while ((left >= 0 || right < bins) && mass < target) {
      const bool take_right =
          left < 0 || (right < bins && std::fabs(centre(right, bins, r)) <= std::fabs(centre(left, bins, r)));
      const int64_t i = take_right ? right++ : left--;
      mass += double(counts[i]);
      t = std::fabs(centre(i, bins, r)) + w / 2;
    }
    return {-t, t};
  }
  const double lo_target = (100.0 - percentile) / 200.0 * total;
  const double hi_target = (100.0 + percentile) / 200.0 * total;
  double mass = 0, lo = r.lo, hi = r.hi;
  bool lo_set = false;
  for (int64_t i = 0; i < bins; ++i) {
    mass += double(counts[i]);
    if (!lo_set && mass > lo_target) {
      lo = r.lo + double(i) * w;
      lo_set = true;
    }
    if (mass >= hi_target) {
      hi = r.lo + double(i + 1) * w;
      break;
    }
  }
  return holding_zero(lo, hi);
}

ClipRange clip_mse(const int64_t* counts, int64_t bins, HistogramRange r, int64_t levels,
                   bool symmetric) {
  const Moments m(counts, bins, r);
  const double w = bin_width(bins, r);
  double best = std::numeric_limits<double>::infinity();
  ClipRange best_range = holding_zero(r.lo, r.hi);
  if (symmetric) {
    const double amax = std::max(-r.lo, r.hi);
    for (int64_t k = 1; k <= bins; ++k) {
      const double t = amax * double(k) / double(bins);
      const double e = model_error(m, bins, r, -t, t, levels);
      if (e < best) best = e, best_range = {-t, t};
    }
    return best_range;
  }
  // Edges at or below zero for the lower end, at or above zero for the upper.
  std::vector<double> lows{0.0}, highs{0.0};
  for (int64_t i = 0; i <= bins; ++i) {
    const double e = r.lo + double(i) * w;
    if (e < 0) lows.push_back(e);
    if (e > 0) highs.push_back(e);
  }
  for (double a : lows) {
    for (double b : highs) {
      if (!(b > a)) continue;
      const double e = model_error(m, bins, r, a, b, levels);
      if (e < best) best = e, best_range = {a, b};
    }
  }
  return best_range;
}

ClipRange clip_entropy(const int64_t* counts, int64_t bins, HistogramRange r, int64_t levels) {
  // |x| histogram with `bins` bins over [0, amax].
  const double amax = std::max(-r.lo, r.hi);
  std::vector<double> abs_hist(size_t(bins), 0.0);
  for (int64_t i = 0; i < bins; ++i) {
    const double a = std::fabs(centre(i, bins, r));
    abs_hist[size_t(std::min<int64_t>(bins - 1, int64_t(a / amax * double(bins))))] +=
        double(counts[i]);
  }
  // As TensorRT's calibrator: the first bin, where ReLU's exact zeros pile up,
  // counts as much as its neighbour, so the spike does not drive the choice.
  if (bins > 1) abs_hist[0] = abs_hist[1];
  // Levels available to |x|: half of them for data of both signs, all of them
  // for one-signed data (post-ReLU with an unsigned range).
  const bool one_signed = r.lo >= 0.0 || r.hi <= 0.0;
  const int64_t quant_bins = std::max<int64_t>(one_signed ? levels : levels / 2, 1);
  // KL(P || Q) per candidate i in O(quant_bins) from prefix sums over h:
  // P is h[0, i) with the tail h[i, bins) added to its last bin, Q spreads each
  // level's mass m over its n non-empty bins, and with T = sum P, S = sum Q:
  //   KL = (sum p log p - sum p log q) / T + log(S / T),
  //   sum p log q = sum over levels of (m + tail if last) * log(m / n).
  const std::vector<double>& h = abs_hist;
  std::vector<double> mass(size_t(bins + 1), 0.0), plogp(mass.size(), 0.0), nonzero(mass.size(), 0.0);
  for (int64_t j = 0; j < bins; ++j) {
    const double v = h[size_t(j)];
    mass[size_t(j + 1)] = mass[size_t(j)] + v;
    plogp[size_t(j + 1)] = plogp[size_t(j)] + (v > 0 ? v * std::log(v) : 0.0);
    nonzero[size_t(j + 1)] = nonzero[size_t(j)] + (v != 0);
  }
  const double total = mass[size_t(bins)];
  double best = std::numeric_limits<double>::infinity();
  int64_t best_i = bins;
  for (int64_t i = std::min(quant_bins, bins); i <= bins && total > 0; ++i) {
    const double kept = mass[size_t(i)], tail = total - kept, last = h[size_t(i - 1)];
    if (kept == 0) continue;
    if (last == 0 && tail > 0) continue;  // P has mass where Q has none: KL is infinite
    const double p_last = last + tail;
    const double p_log_p = plogp[size_t(i - 1)] + (p_last > 0 ? p_last * std::log(p_last) : 0.0);
    const int64_t merged = i / quant_bins;
    double p_log_q = 0;
    for (int64_t level = 0; level < quant_bins; ++level) {
      const int64_t s = level * merged, e = level == quant_bins - 1 ? i : s + merged;
      const double m = mass[size_t(e)] - mass[size_t(s)];
      if (m == 0) continue;
      const double n = nonzero[size_t(e)] - nonzero[size_t(s)];
      p_log_q += (level == quant_bins - 1 ? m + tail : m) * std::log(m / n);
    }
    const double kl = (p_log_p - p_log_q) / total + std::log(kept / total);
    if (kl < best) best = kl, best_i = i;
  }
  const double t = amax * double(best_i) / double(bins);
  return holding_zero(std::max(r.lo, -t), std::min(r.hi, t));
}

double expected_quant_error(const int64_t* counts, int64_t bins, HistogramRange r, ClipRange clip,
                            int64_t levels) {
  const double step = (clip.hi - clip.lo) / double(levels - 1);
  double error = 0;
  for (int64_t i = 0; i < bins; ++i) {
    const double c = centre(i, bins, r), k = double(counts[i]);
    const double e = c < clip.lo ? (clip.lo - c) * (clip.lo - c)
                     : c > clip.hi ? (c - clip.hi) * (c - clip.hi)
                                   : step * step / 12.0;
    error += k * e;
  }
  return error;
}

}  // namespace torchqat::kernels
