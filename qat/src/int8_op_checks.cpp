// The checks the INT8 ops share (int8_op_checks.h).
#include "int8_op_checks.h"

#include <cmath>

#include "torchqat/kernels/quant_math.h"

namespace torchqat {

namespace k = kernels;

void check_output_grid(const char* op, std::optional<double> out_scale, std::optional<int64_t> out_zero_point) {
  TORCH_CHECK(out_scale.has_value() == out_zero_point.has_value(), op,
              ": give out_scale and out_zero_point together (uint8 output) or neither (float output)");
  if (out_scale) {
    TORCH_CHECK(std::isfinite(*out_scale) && *out_scale > 0, op, ": out_scale must be finite and > 0, got ",
                *out_scale);
    TORCH_CHECK(*out_zero_point >= 0 && *out_zero_point <= 255, op,
                ": out_zero_point must be in [0, 255], got ", *out_zero_point);
  }
}

k::GemmInt8Args checked_epilogue(const char* op, int64_t n, int64_t x_zero_point, const at::Tensor& multiplier,
                                 const std::optional<at::Tensor>& bias, std::optional<double> out_scale,
                                 std::optional<int64_t> out_zero_point, bool relu) {
  TORCH_CHECK(x_zero_point >= 0 && x_zero_point <= 255, op, ": x_zero_point must be in [0, 255], got ",
              x_zero_point);
  TORCH_CHECK(multiplier.scalar_type() == at::kFloat && multiplier.numel() == n && multiplier.is_contiguous(),
              op, ": multiplier must be a contiguous float32 tensor of ", n, " values, got ",
              multiplier.scalar_type(), " ", multiplier.sizes());
  if (bias) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == n && bias->is_contiguous(), op,
                ": bias must be a contiguous float32 tensor of ", n, " values, got ", bias->scalar_type(),
                " ", bias->sizes());
  }
  check_output_grid(op, out_scale, out_zero_point);
  k::GemmInt8Args args;
  args.a_zero = int32_t(x_zero_point);
  args.b.n = n;
  args.output = out_scale ? k::GemmOutput::kUint8 : k::GemmOutput::kFloat;
  args.multiplier = multiplier.const_data_ptr<float>();
  args.bias = bias ? bias->const_data_ptr<float>() : nullptr;
  args.relu = relu;
  // The reciprocal in float32, as fake_quantize takes it (reciprocal_scale).
  args.inv_out_scale = out_scale ? k::reciprocal_scale(float(*out_scale)) : 1.0f;
  args.out_zero = int32_t(out_zero_point.value_or(0));
  args.ldc = n;
  return args;
}

ConvGeometry conv_geometry(const char* op, c10::IntArrayRef x_sizes, c10::IntArrayRef kernel,
                           c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  TORCH_CHECK(x_sizes.size() == 4, op, ": x must be 4-D [N, C, H, W], got ", x_sizes);
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(kernel[i] > 0 && stride[i] > 0 && dilation[i] > 0 && padding[i] >= 0, op,
                ": kernel_size, stride and dilation must be positive and padding >= 0, got ", kernel, ", ", stride,
                ", ", dilation, ", ", padding);
  }
  ConvGeometry g{x_sizes[0], x_sizes[1], x_sizes[2], x_sizes[3], kernel[0], kernel[1], 0, 0};
  g.oh = (g.h + 2 * padding[0] - dilation[0] * (g.kh - 1) - 1) / stride[0] + 1;
  g.ow = (g.w + 2 * padding[1] - dilation[1] * (g.kw - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(g.oh > 0 && g.ow > 0, op, ": the kernel does not fit the padded input ", x_sizes);
  return g;
}

}  // namespace torchqat
