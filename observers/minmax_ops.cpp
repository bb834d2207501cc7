// observe_minmax: per-granularity min/max of the finite values of x, with the
// count of non-finite ones. CPU: the run-time-selected observer kernels;
// CUDA: ATen reductions (no custom kernel yet); Meta: shapes.
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "fakequant/cpu_parallel.h"
#include "fakequant/qparams.h"
#include "torchqat/kernels/observe.h"

namespace torchqat {
namespace {

constexpr const char* kOp = "observe_minmax";

struct Outputs {
  at::Tensor min, max, nonfinite;
};

Outputs allocate(const at::Tensor& x, const Granularity& g) {
  const auto opts = x.options().dtype(at::kFloat);
  return {at::full(g.param_shape, std::numeric_limits<float>::infinity(), opts),
          at::full(g.param_shape, -std::numeric_limits<float>::infinity(), opts),
          at::zeros(g.param_shape, x.options().dtype(at::kLong))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> observe_minmax_cpu(
    const at::Tensor& x_in, std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  check_input_dtype(kOp, x_in);
  const auto g = resolve_granularity(kOp, x_in, axis, group_size);
  const at::Tensor x = x_in.contiguous();
  auto out = allocate(x, g);
  const int64_t numel = x.numel();
  const int64_t channels = g.layout.channels;
  const auto dtype = kernel_dtype(x);
  const auto& k = kernels::observer_kernels();
  const kernels::MinMaxState state{out.min.mutable_data_ptr<float>(),
                                   out.max.mutable_data_ptr<float>(),
                                   out.nonfinite.mutable_data_ptr<int64_t>()};
  if (numel > 0 && channels >= kChannelSplitMin) {
    const int64_t outer = numel / (channels * g.layout.inner);
    parallel_over_channels(numel, channels, [&](int64_t cb, int64_t ce) {
      k.minmax_channels(dtype, x.const_data_ptr(), g.layout, state, outer, cb, ce);
    });
  } else if (numel > 0) {
    // Few channels: fixed tiles, each with its own state, folded afterwards.
    const int64_t tiles = tile_count(numel);
    std::vector<float> lo(size_t(tiles * channels), INFINITY), hi(lo.size(), -INFINITY);
    std::vector<int64_t> bad(lo.size(), 0);
    parallel_over_tiles(numel, [&](int64_t t, int64_t begin, int64_t end) {
      const size_t o = size_t(t * channels);
      k.minmax_range(dtype, x.const_data_ptr(), g.layout, {&lo[o], &hi[o], &bad[o]}, begin, end);
    });
    for (int64_t t = 0; t < tiles; ++t) {
      for (int64_t c = 0; c < channels; ++c) {
        const size_t o = size_t(t * channels + c);
        state.min[c] = std::min(state.min[c], lo[o]);
        state.max[c] = std::max(state.max[c], hi[o]);
        state.nonfinite[c] += bad[o];
      }
    }
  }
  return {out.min, out.max, out.nonfinite};
}

// x viewed so that dim 0 is the statistic's flat index and dim 1 the elements it covers.
at::Tensor by_statistic(const at::Tensor& x, const Granularity& g) {
  switch (g.kind) {
    case Granularity::kPerChannel:
      return x.movedim(g.axis, 0).reshape({x.size(g.axis), -1});
    case Granularity::kPerGroup:
      return x.reshape({-1, g.layout.inner});
    case Granularity::kPerTensor:
      break;
  }
  return x.reshape({1, -1});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> observe_minmax_cuda(
    const at::Tensor& x, std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  check_input_dtype(kOp, x);
  const auto g = resolve_granularity(kOp, x, axis, group_size);
  const at::Tensor v = by_statistic(x.detach().to(at::kFloat), g);
  const at::Tensor finite = v.isfinite();
  const double inf = std::numeric_limits<double>::infinity();
  at::Tensor lo = at::where(finite, v, inf), hi = at::where(finite, v, -inf);
  if (v.size(1) == 0) {  // amin/amax reject empty reductions
    auto out = allocate(x, g);
    return {out.min, out.max, out.nonfinite};
  }
  return {lo.amin(1).reshape(g.param_shape), hi.amax(1).reshape(g.param_shape),
          finite.logical_not().sum(1).reshape(g.param_shape)};
}

// Written with SymInt: the statistic's shape from x's (possibly symbolic) sizes.
std::tuple<at::Tensor, at::Tensor, at::Tensor> observe_minmax_meta(
    const at::Tensor& x, std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  check_input_dtype(kOp, x);
  TORCH_CHECK(!(axis.has_value() && group_size.has_value()), kOp,
              ": give axis (per-channel) or group_size (per-group), not both");
  std::vector<c10::SymInt> shape;
  if (axis.has_value()) {
    const int64_t dim = x.dim();
    TORCH_CHECK(dim >= 1 && *axis >= -dim && *axis < dim, kOp, ": axis (", *axis,
                ") is out of range for x with ", dim, " dimensions");
    shape.push_back(x.sym_size(*axis < 0 ? *axis + dim : *axis));
  } else if (group_size.has_value()) {
    TORCH_CHECK(*group_size >= 1 && x.dim() >= 1, kOp, ": group_size must be >= 1 and x 1-D or more");
    const auto sizes = x.sym_sizes();
    shape.assign(sizes.begin(), sizes.end());
    shape.back() = shape.back() / *group_size;
  }
  const auto opts = x.options().dtype(at::kFloat);
  return {at::empty_symint(shape, opts), at::empty_symint(shape, opts),
          at::empty_symint(shape, x.options().dtype(at::kLong))};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) { m.impl("observe_minmax", &observe_minmax_cpu); }
TORCH_LIBRARY_IMPL(torchqat, CUDA, m) { m.impl("observe_minmax", &observe_minmax_cuda); }
TORCH_LIBRARY_IMPL(torchqat, Meta, m) { m.impl("observe_minmax", &observe_minmax_meta); }

}  // namespace torchqat
