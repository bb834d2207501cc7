// The INT8 depthwise Conv2d op of the exported model (CPU and Meta): weight
// packing and the depthwise kernel (kernels/depthwise_int8.h) over the
// channels-last input, with the GEMM's epilogue.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "int8_op_checks.h"
#include "packed_header.h"
#include "torchqat/kernels/depthwise_int8.h"

namespace torchqat {
namespace {

namespace k = kernels;

// The packed tensor (int8): the header of packed_header.h (its in_features
// field holds the tap count), then the kernels' layout.
constexpr PackedFormat kDepthwiseFormat{'D', 1, "pack_depthwise_int8"};
constexpr int64_t kHeader = kPackedHeader;

std::tuple<at::Tensor, at::Tensor> pack_depthwise_int8_cpu(const at::Tensor& weight) {
  constexpr const char* op = "pack_depthwise_int8";
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 4 && weight.size(1) == 1, op,
              ": weight must be a 4-D int8 tensor [channels, 1, kernel_h, kernel_w] (a depthwise conv's), got ",
              weight.scalar_type(), " ", weight.sizes());
  const int64_t channels = weight.size(0), taps = weight.size(2) * weight.size(3);
  TORCH_CHECK(taps <= k::kMaxDepthwiseTaps, op, ": kernel_h * kernel_w must be at most ", k::kMaxDepthwiseTaps,
              " (the int32 accumulator's exact range), got ", taps);
  const at::Tensor w = weight.contiguous();
  auto packed = at::empty({kHeader + k::depthwise_packed_bytes(channels, taps)}, w.options());
  auto sums = at::empty({channels}, w.options().dtype(at::kInt));
  int8_t* data = packed.mutable_data_ptr<int8_t>();
  write_packed_header(reinterpret_cast<uint8_t*>(data), kDepthwiseFormat, taps);
  k::pack_depthwise_int8_weights(w.const_data_ptr<int8_t>(), channels, taps, data + kHeader,
                                 sums.mutable_data_ptr<int32_t>());
  return {packed, sums};
}

std::tuple<at::Tensor, at::Tensor> pack_depthwise_int8_meta(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 4, "pack_depthwise_int8: weight must be 4-D, got ", weight.dim(), " dimensions");
  const int64_t channels = weight.size(0), taps = weight.size(2) * weight.size(3);
  return {at::empty({kHeader + k::depthwise_packed_bytes(channels, taps)}, weight.options()),
          at::empty({channels}, weight.options().dtype(at::kInt))};
}

at::Tensor depthwise_conv2d_int8_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                                     const at::Tensor& weight_sums, const at::Tensor& multiplier,
                                     const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel,
                                     c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                     std::optional<double> out_scale, std::optional<int64_t> out_zero_point,
                                     bool relu) {
  constexpr const char* op = "depthwise_conv2d_int8";
  TORCH_CHECK(x.scalar_type() == at::kByte && x.is_cpu(), op, ": x must be a uint8 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  const ConvGeometry g = conv_geometry(op, x.sizes(), kernel, stride, padding, dilation);
  TORCH_CHECK(weight_sums.scalar_type() == at::kInt && weight_sums.dim() == 1 && weight_sums.is_contiguous(), op,
              ": weight_sums must be the contiguous 1-D int32 tensor from pack_depthwise_int8, got ",
              weight_sums.scalar_type(), " ", weight_sums.sizes());
  TORCH_CHECK(weight_sums.numel() == g.c, op, ": x has ", g.c, " channels but the weights were packed for ",
              weight_sums.numel());
  TORCH_CHECK(packed.scalar_type() == at::kChar && packed.dim() == 1 && packed.is_contiguous() &&
                  packed.is_cpu() && packed.numel() >= kHeader,
              op, ": packed must be the contiguous 1-D int8 CPU tensor from pack_depthwise_int8, got ",
              packed.scalar_type(), " ", packed.sizes());
  const int64_t taps =
      read_packed_header(op, reinterpret_cast<const uint8_t*>(packed.const_data_ptr<int8_t>()), kDepthwiseFormat);
  TORCH_CHECK(taps == g.kh * g.kw, op, ": kernel_size ", kernel, " has ", g.kh * g.kw,
              " taps but the weights were packed for ", taps);
  TORCH_CHECK(packed.numel() == kHeader + k::depthwise_packed_bytes(g.c, taps), op, ": packed holds ",
              packed.numel() - kHeader, " bytes but ", g.c, " channels of ", taps, " taps take ",
              k::depthwise_packed_bytes(g.c, taps));

  k::DepthwiseInt8Args args;
  args.epilogue = checked_epilogue(op, g.c, x_zero_point, multiplier, bias, out_scale, out_zero_point, relu);
  args.epilogue.b.col_sums = weight_sums.const_data_ptr<int32_t>();
  const at::Tensor nhwc = x.contiguous(at::MemoryFormat::ChannelsLast);  // no copy for a channels-last input
  at::Tensor out = conv_output_rows(x, g, g.c, out_scale.has_value());
  args.x = nhwc.const_data_ptr<uint8_t>();
  args.batch = g.n;
  args.height = g.h;
  args.width = g.w;
  args.channels = g.c;
  args.kernel_h = g.kh;
  args.kernel_w = g.kw;
  args.stride_h = stride[0];
  args.stride_w = stride[1];
  args.pad_h = padding[0];
  args.pad_w = padding[1];
  args.dilation_h = dilation[0];
  args.dilation_w = dilation[1];
  args.out_h = g.oh;
  args.out_w = g.ow;
  args.weights = packed.const_data_ptr<int8_t>() + kHeader;
  args.epilogue.out = out.data_ptr();
  // Tasks of whole output rows, at least ~32K multiply-adds each.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, g.ow * g.c * taps));
  const auto& kernels = k::depthwise_int8_kernels();
  at::parallel_for(0, g.n * g.oh, grain, [&](int64_t begin, int64_t end) { kernels.conv(args, begin, end); });
  return as_nchw(out, g);
}

at::Tensor depthwise_conv2d_int8_meta(const at::Tensor& x, int64_t, const at::Tensor&, const at::Tensor& weight_sums,
                                      const at::Tensor&, const std::optional<at::Tensor>&, c10::IntArrayRef kernel,
                                      c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                      std::optional<double> out_scale, std::optional<int64_t>, bool) {
  const ConvGeometry g = conv_geometry("depthwise_conv2d_int8", x.sizes(), kernel, stride, padding, dilation);
  return as_nchw(conv_output_rows(x, g, weight_sums.size(0), out_scale.has_value()), g);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("pack_depthwise_int8", &pack_depthwise_int8_cpu);
  m.impl("depthwise_conv2d_int8", &depthwise_conv2d_int8_cpu);
}

TORCH_LIBRARY_IMPL(torchqat, Meta, m) {
  m.impl("pack_depthwise_int8", &pack_depthwise_int8_meta);
  m.impl("depthwise_conv2d_int8", &depthwise_conv2d_int8_meta);
}

}  // namespace torchqat
