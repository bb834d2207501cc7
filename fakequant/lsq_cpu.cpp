// CPU kernels of the LSQ ops. The backward is one fused pass over x and grad
// that writes grad_x and sums the scale and zero-point gradients per scale
// inside the kernel: no full-size temporary besides grad_x. The sums are the
// same for any thread count: with many scales each is summed whole by one
// task; with few, fixed 64K-element tiles are summed and then added in order.
#include <torch/library.h>

#include <vector>

#include "fakequant/cpu_parallel.h"
#include "fakequant/lsq_prepare.h"

namespace torchqat {
namespace {

constexpr const char* kOp = "lsq_fake_quantize";

at::Tensor lsq_forward_cpu(const at::Tensor& x, const at::Tensor& scale,
                           const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                           std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  const auto o = prepare_lsq(kOp, x, scale, zero_point, quant_min, quant_max, axis, group_size);
  at::Tensor y = at::empty_like(o.x, at::MemoryFormat::Contiguous);
  const auto kernel = kernels::fake_quant_kernels().affine;
  parallel_over_elements(o.numel, [&](int64_t begin, int64_t end) {
    kernel(o.args, o.dtype, o.x.const_data_ptr(), y.mutable_data_ptr(), nullptr, begin, end);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsq_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
    std::optional<double> grad_factor, std::optional<int64_t> axis,
    std::optional<int64_t> group_size) {
  const auto call = prepare_lsq_backward(kOp, grad, x, scale, zero_point, quant_min, quant_max,
                                         grad_factor, axis, group_size);
  const auto& o = call.operands;
  const int64_t channels = o.args.layout.channels;
  auto opts = x.options().dtype(at::kDouble);
  at::Tensor scale_sum = at::zeros({channels}, opts), outside_sum = at::zeros({channels}, opts);
  const auto& k = kernels::fake_quant_kernels();
  const void* xp = o.x.const_data_ptr();
  const void* gp = call.grad.const_data_ptr();
  void* gxp = call.grad_x.mutable_data_ptr();

  if (o.numel == 0) {
    // nothing to sum
  } else if (channels >= kChannelSplitMin) {
    const kernels::LsqSums sums{scale_sum.mutable_data_ptr<double>(),
                                outside_sum.mutable_data_ptr<double>()};
    parallel_over_channels(o.numel, channels, [&](int64_t cb, int64_t ce) {
      k.lsq_backward_channels(o.args, o.dtype, xp, gp, gxp, sums, o.outer, cb, ce);
    });
  } else {
    const int64_t tiles = tile_count(o.numel);
    std::vector<double> partial(size_t(tiles * 2 * channels), 0.0);
    parallel_over_tiles(o.numel, [&](int64_t t, int64_t begin, int64_t end) {
      double* p = partial.data() + t * 2 * channels;
      k.lsq_backward_range(o.args, o.dtype, xp, gp, gxp, {p, p + channels}, begin, end);
    });
    double* ss = scale_sum.mutable_data_ptr<double>();
    double* os = outside_sum.mutable_data_ptr<double>();
    for (int64_t t = 0; t < tiles; ++t) {
      const double* p = partial.data() + t * 2 * channels;
      for (int64_t c = 0; c < channels; ++c) {
        ss[c] += p[c];
        os[c] += p[channels + c];
      }
    }
  }
  return call.finish(scale_sum, outside_sum, scale, zero_point);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("lsq_fake_quantize_forward", &lsq_forward_cpu);
  m.impl("lsq_fake_quantize_backward", &lsq_backward_cpu);
}

}  // namespace torchqat
