// Histogram calibration kernels against brute-force references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "torchqat/kernels/histogram.h"

namespace k = torchqat::kernels;

namespace {

std::vector<int64_t> direct_histogram(const std::vector<float>& v, int64_t bins, k::HistogramRange r) {
  std::vector<int64_t> h(size_t(bins), 0);
  for (float x : v) {
    const int64_t b = int64_t((double(x) - r.lo) * double(bins) / (r.hi - r.lo));
    ++h[size_t(std::clamp<int64_t>(b, 0, bins - 1))];
  }
  return h;
}

// Every old bin lands, whole, in the new bin holding its centre.
TEST(Histogram, WideningMergesWholeBins) {
  std::mt19937 rng(1);
  const int64_t bins = 64;
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int64_t> counts(bins);
    for (auto& c : counts) c = int64_t(rng() % 100);
    const k::HistogramRange before{-1.0 - (rng() % 7), 2.0 + (rng() % 5)};
    k::HistogramRange after = before;
    const double xmin = before.lo - double(rng() % 40), xmax = before.hi + double(rng() % 90);
    auto merged = counts;
    k::histogram_widen(merged.data(), bins, &after, xmin, xmax);
    ASSERT_LE(after.lo, xmin);
    ASSERT_GT(after.hi, xmax);
    std::vector<int64_t> expected(bins, 0);
    const double w_old = (before.hi - before.lo) / bins, w_new = (after.hi - after.lo) / bins;
    for (int64_t i = 0; i < bins; ++i) {
      const double centre = before.lo + (double(i) + 0.5) * w_old;
      expected[size_t(int64_t((centre - after.lo) / w_new))] += counts[size_t(i)];
    }
    EXPECT_EQ(merged, expected) << "trial " << trial;
    // New edges fall on old edges: the width grew by a power of two.
    const double ratio = w_new / w_old;
    EXPECT_EQ(ratio, std::exp2(std::round(std::log2(ratio))));
  }
}

// Arbitrary data: the total is exact, and merged counts equal binning all the
// data directly on the final grid but for values lying exactly on an edge
// that became interior (a batch minimum at the lower edge): direct binning's
// rounding may put such a value on either side. At most one per widening.
TEST(Histogram, WideningKeepsEveryCount) {
  std::mt19937 rng(2);
  const int64_t bins = 256;
  std::vector<int64_t> counts(bins, 0);
  std::vector<float> all;
  k::HistogramRange r{0, 0};
  for (int batch = 0; batch < 6; ++batch) {
    std::normal_distribution<float> d(0.3f * batch, 1.0f + batch);
    std::vector<float> v(5000);
    for (auto& x : v) x = d(rng);
    const auto [mn, mx] = std::minmax_element(v.begin(), v.end());
    if (batch == 0) {
      r = k::histogram_initial_range(*mn, *mx, bins);
    } else {
      k::histogram_widen(counts.data(), bins, &r, *mn, *mx);
    }
    k::histogram_add(k::DType::kFloat32, v.data(), 0, int64_t(v.size()), counts.data(), bins, r);
    all.insert(all.end(), v.begin(), v.end());
    const auto direct = direct_histogram(all, bins, r);
    int64_t total = 0, moved = 0;
    for (int64_t b = 0; b < bins; ++b) {
      total += counts[size_t(b)];
      moved += std::abs(counts[size_t(b)] - direct[size_t(b)]);
    }
    EXPECT_EQ(total, int64_t(all.size()));
    EXPECT_LE(moved, 2 * batch) << "after batch " << batch;  // each move counts twice
  }
}

TEST(Histogram, SkipsAndCountsNonFinite) {
  const float v[] = {1.0f, NAN, 2.0f, INFINITY, -INFINITY};
  std::vector<int64_t> counts(8, 0);
  EXPECT_EQ(k::histogram_add(k::DType::kFloat32, v, 0, 5, counts.data(), 8, {0.0, 2.0}), 3);
  int64_t total = 0;
  for (auto c : counts) total += c;
  EXPECT_EQ(total, 2);
  EXPECT_EQ(counts[7], 1);  // the top edge goes to the last bin
}

std::vector<int64_t> heavy_tailed(int64_t bins, k::HistogramRange* r, uint32_t seed, bool relu) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> d(3.0f);
  std::vector<float> v(20000);
  for (auto& x : v) x = relu ? std::max(0.0f, d(rng)) : d(rng);
  const auto [mn, mx] = std::minmax_element(v.begin(), v.end());
  *r = k::histogram_initial_range(*mn, *mx, bins);
  return direct_histogram(v, bins, *r);
}

TEST(ClipMse, IsTheBestOfAllCandidateRanges) {
  for (bool relu : {false, true}) {
    for (int64_t levels : {16, 256}) {
      const int64_t bins = 96;
      k::HistogramRange r{};
      const auto h = heavy_tailed(bins, &r, 7, relu);
      const double w = (r.hi - r.lo) / bins;
      // Symmetric: every t = amax * k / bins.
      const double amax = std::max(-r.lo, r.hi);
      double best = std::numeric_limits<double>::infinity(), best_t = 0;
      for (int64_t i = 1; i <= bins; ++i) {
        const double t = amax * double(i) / double(bins);
        const double e = k::expected_quant_error(h.data(), bins, r, {-t, t}, levels);
        if (e < best) best = e, best_t = t;
      }
      const auto sym = k::clip_mse(h.data(), bins, r, levels, true);
      EXPECT_NEAR(sym.hi, best_t, 1e-12) << "relu=" << relu << " levels=" << levels;
      // Affine: every pair of edges around zero (and zero itself).
      std::vector<double> lows{0.0}, highs{0.0};
      for (int64_t i = 0; i <= bins; ++i) {
        const double e = r.lo + double(i) * w;
        if (e < 0) lows.push_back(e);
        if (e > 0) highs.push_back(e);
      }
      best = std::numeric_limits<double>::infinity();
      k::ClipRange best_range{};
      for (double a : lows) {
        for (double b : highs) {
          if (!(b > a)) continue;
          const double e = k::expected_quant_error(h.data(), bins, r, {a, b}, levels);
          if (e < best) best = e, best_range = {a, b};
        }
      }
      const auto aff = k::clip_mse(h.data(), bins, r, levels, false);
      EXPECT_NEAR(k::expected_quant_error(h.data(), bins, r, aff, levels), best, 1e-9 * best);
      EXPECT_DOUBLE_EQ(aff.lo, best_range.lo);
      EXPECT_DOUBLE_EQ(aff.hi, best_range.hi);
    }
  }
}

TEST(ClipPercentile, MatchesSortedBinCentres) {
  const int64_t bins = 200;
  k::HistogramRange r{};
  const auto h = heavy_tailed(bins, &r, 3, false);
  const double w = (r.hi - r.lo) / bins;
  for (double p : {50.0, 90.0, 99.0, 99.9, 100.0}) {
    // Symmetric: the smallest |centre| + w/2 whose bins hold p % of the mass.
    std::vector<std::pair<double, int64_t>> by_abs;
    int64_t total = 0;
    for (int64_t i = 0; i < bins; ++i) {
      by_abs.emplace_back(std::fabs(r.lo + (i + 0.5) * w), h[size_t(i)]);
      total += h[size_t(i)];
    }
    std::stable_sort(by_abs.begin(), by_abs.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    double mass = 0, t = 0;
    for (const auto& [a, c] : by_abs) {
      if (mass >= p / 100.0 * double(total)) break;
      mass += double(c);
      t = a + w / 2;
    }
    const auto clip = k::clip_percentile(h.data(), bins, r, p, true);
    EXPECT_NEAR(clip.hi, t, 1e-9) << "p=" << p;
    EXPECT_EQ(clip.lo, -clip.hi);
  }
}

// KL(P || Q) of TensorRT's entropy calibration for the first i bins, written
// out plainly (no shared code with the kernel).
double kl_for(const std::vector<double>& hist, int64_t i, int64_t levels) {
  std::vector<double> p(hist.begin(), hist.begin() + i), q(size_t(i), 0.0);
  for (size_t j = size_t(i); j < hist.size(); ++j) p.back() += hist[j];
  const int64_t per = i / levels;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t s = l * per, e = l == levels - 1 ? i : s + per;
    double m = 0;
    int64_t nz = 0;
    for (int64_t j = s; j < e; ++j) m += hist[size_t(j)], nz += hist[size_t(j)] > 0;
    for (int64_t j = s; j < e; ++j) q[size_t(j)] = hist[size_t(j)] > 0 ? m / double(nz) : 0.0;
  }
  double ps = 0, qs = 0, kl = 0;
  for (int64_t j = 0; j < i; ++j) ps += p[size_t(j)], qs += q[size_t(j)];
  for (int64_t j = 0; j < i; ++j) {
    if (p[size_t(j)] == 0) continue;
    if (q[size_t(j)] == 0) return std::numeric_limits<double>::infinity();
    kl += p[size_t(j)] / ps * std::log((p[size_t(j)] / ps) / (q[size_t(j)] / qs));
  }
  return kl;
}

TEST(ClipEntropy, MinimisesKlOverAllThresholds) {
  const int64_t bins = 128, levels = 16;
  for (bool relu : {false, true}) {
    k::HistogramRange r{};
    const auto h = heavy_tailed(bins, &r, 11, relu);
    // The same |x| histogram the kernel builds: bin centres folded onto [0, amax].
    const double amax = std::max(-r.lo, r.hi), w = (r.hi - r.lo) / bins;
    std::vector<double> abs_hist(size_t(bins), 0.0);
    for (int64_t i = 0; i < bins; ++i) {
      const double a = std::fabs(r.lo + (i + 0.5) * w);
      abs_hist[size_t(std::min<int64_t>(bins - 1, int64_t(a / amax * bins)))] += double(h[size_t(i)]);
    }
    abs_hist[0] = abs_hist[1];
    const int64_t q = relu ? levels : levels / 2;
    double best = std::numeric_limits<double>::infinity();
    int64_t best_i = bins;
    for (int64_t i = q; i <= bins; ++i) {
      const double kl = kl_for(abs_hist, i, q);
      if (kl < best) best = kl, best_i = i;
    }
    const auto clip = k::clip_entropy(h.data(), bins, r, levels);
    EXPECT_NEAR(clip.hi, std::min(r.hi, amax * double(best_i) / bins), 1e-12) << "relu=" << relu;
  }
}

}  // namespace
