// max_pool2d_uint8: max pooling of uint8 activations between the exported
// model's integer layers (kernels/max_pool_u8.h), CPU and Meta; the output
// shape is F.max_pool2d's (ceil_mode too), channels-last.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "torchqat/kernels/max_pool_u8.h"

namespace torchqat {
namespace {

namespace k = kernels;
constexpr const char* kOp = "max_pool2d_uint8";

int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (span < 0 ? -((-span + stride - 1) / stride) : span / stride) + 1;
  // As ATen: the last window must start inside the input or its left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

k::MaxPoolU8Args pool_args(c10::IntArrayRef sizes, c10::IntArrayRef kernel, c10::IntArrayRef stride,
                           c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  TORCH_CHECK(sizes.size() == 4, kOp, ": x must be 4-D [N, C, H, W], got ", sizes);
  TORCH_CHECK(kernel.size() == 2 && stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, kOp,
              ": kernel_size, stride, padding and dilation take two values each");
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(kernel[i] > 0 && stride[i] > 0 && dilation[i] > 0 && padding[i] >= 0, kOp,
                ": kernel_size, stride and dilation must be positive and padding >= 0, got ", kernel, ", ", stride,
                ", ", dilation, ", ", padding);
    TORCH_CHECK(padding[i] <= ((kernel[i] - 1) * dilation[i] + 1) / 2, kOp,
                ": padding must be at most half the dilated kernel size, got padding ", padding, " for kernel_size ",
                kernel, " and dilation ", dilation);
  }
  k::MaxPoolU8Args a;
  a.batch = sizes[0], a.channels = sizes[1], a.height = sizes[2], a.width = sizes[3];
  a.kernel_h = kernel[0], a.kernel_w = kernel[1], a.stride_h = stride[0], a.stride_w = stride[1];
  a.pad_h = padding[0], a.pad_w = padding[1], a.dilation_h = dilation[0], a.dilation_w = dilation[1];
  a.out_h = pooled_size(a.height, a.kernel_h, a.stride_h, a.pad_h, a.dilation_h, ceil_mode);
  a.out_w = pooled_size(a.width, a.kernel_w, a.stride_w, a.pad_w, a.dilation_w, ceil_mode);
  TORCH_CHECK(a.out_h > 0 && a.out_w > 0, kOp, ": the window does not fit the padded input ", sizes);
  return a;
}

at::Tensor nhwc_output(const at::Tensor& x, const k::MaxPoolU8Args& a) {
  return at::empty({a.batch, a.out_h, a.out_w, a.channels}, x.options().dtype(at::kByte)).permute({0, 3, 1, 2});
}

at::Tensor max_pool2d_uint8_cpu(const at::Tensor& x, c10::IntArrayRef kernel, c10::IntArrayRef stride,
                                c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  TORCH_CHECK(x.scalar_type() == at::kByte && x.is_cpu(), kOp, ": x must be a uint8 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  k::MaxPoolU8Args a = pool_args(x.sizes(), kernel, stride, padding, dilation, ceil_mode);
  const at::Tensor src = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out = nhwc_output(x, a);
  a.x = src.const_data_ptr<uint8_t>();
  a.out = out.mutable_data_ptr<uint8_t>();
  const auto fn = k::max_pool_u8_kernels().pool;
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, a.out_w * a.channels));
  at::parallel_for(0, a.batch * a.out_h, grain, [&](int64_t begin, int64_t end) { fn(a, begin, end); });
  return out;
}

at::Tensor max_pool2d_uint8_meta(const at::Tensor& x, c10::IntArrayRef kernel, c10::IntArrayRef stride,
                                 c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  TORCH_CHECK(x.scalar_type() == at::kByte, kOp, ": x must be a uint8 tensor, got ", x.scalar_type());
  return nhwc_output(x, pool_args(x.sizes(), kernel, stride, padding, dilation, ceil_mode));
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) { m.impl("max_pool2d_uint8", &max_pool2d_uint8_cpu); }

TORCH_LIBRARY_IMPL(torchqat, Meta, m) { m.impl("max_pool2d_uint8", &max_pool2d_uint8_meta); }

}  // namespace torchqat
