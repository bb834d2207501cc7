// The schema of every torchqat op: the one place that calls m.def.
//
// Public ops (fake_quantize, fake_quantize_fp8) are differentiable; each is
// an autograd Function over a forward op that also returns the 1-bit STE
// mask and a backward op (ste_backward), so torch.compile and torch.export
// see plain ops with their own CPU / CUDA / Meta kernels.
#include <torch/library.h>

TORCH_LIBRARY(torchqat, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  m.def(
      "fake_quantize(Tensor x, Tensor scale, Tensor zero_point, int quant_min, int quant_max, "
      "int? axis=None, int? group_size=None) -> Tensor",
      tags);
  m.def(
      "fake_quantize_forward(Tensor x, Tensor scale, Tensor zero_point, int quant_min, "
      "int quant_max, int? axis=None, int? group_size=None) -> (Tensor output, Tensor mask)",
      tags);
  m.def(
      "fake_quantize_fp8(Tensor x, Tensor scale, str fmt=\"e4m3\", int? axis=None, "
      "int? group_size=None) -> Tensor",
      tags);
  m.def(
      "fake_quantize_fp8_forward(Tensor x, Tensor scale, str fmt=\"e4m3\", int? axis=None, "
      "int? group_size=None) -> (Tensor output, Tensor mask)",
      tags);
  m.def("ste_backward(Tensor grad, Tensor mask) -> Tensor", tags);

  // Learned step size (LSQ / LSQ+): differentiable in x, scale and zero_point.
  m.def(
      "lsq_fake_quantize(Tensor x, Tensor scale, Tensor zero_point, int quant_min, "
      "int quant_max, float? grad_factor=None, int? axis=None, int? group_size=None) -> Tensor",
      tags);
  m.def(
      "lsq_fake_quantize_forward(Tensor x, Tensor scale, Tensor zero_point, int quant_min, "
      "int quant_max, int? axis=None, int? group_size=None) -> Tensor",
      tags);
  m.def(
      "lsq_fake_quantize_backward(Tensor grad, Tensor x, Tensor scale, Tensor zero_point, "
      "int quant_min, int quant_max, float? grad_factor=None, int? axis=None, "
      "int? group_size=None) -> (Tensor grad_x, Tensor grad_scale, Tensor grad_zero_point)",
      tags);

  // Observer statistics: per-granularity min / max of the finite values of x and
  // the count of non-finite ones (min = +inf, max = -inf where nothing was finite).
  m.def(
      "observe_minmax(Tensor x, int? axis=None, int? group_size=None) -> (Tensor min, "
      "Tensor max, Tensor nonfinite)",
      tags);

  // Observe and fake-quantize in one op (torch.ao's FusedMovingAvgObsFakeQuantize
  // role): folds the batch's min/max into min_val / max_val in place (running
  // min/max, or a moving average when averaging_constant is given), derives
  // scale / zero point on the device and fake-quantizes x with an STE gradient.
  m.def(
      "observe_fake_quantize(Tensor x, Tensor(a!) min_val, Tensor(b!) max_val, int quant_min, "
      "int quant_max, bool symmetric, float? averaging_constant=None, bool observe=True, "
      "bool fake_quant=True, int? axis=None, int? group_size=None) -> Tensor",
      tags);
  m.def(
      "observe_fake_quantize_forward(Tensor x, Tensor(a!) min_val, Tensor(b!) max_val, "
      "int quant_min, int quant_max, bool symmetric, float? averaging_constant=None, "
      "bool observe=True, bool fake_quant=True, int? axis=None, int? group_size=None) "
      "-> (Tensor output, Tensor mask)",
      tags);

  // Histogram calibration (CPU): fold x into a running histogram (counts[bins]
  // over range = [lo, hi], float64; lo > hi means empty) whose range grows
  // without losing counts; then choose a clipping range from it.
  m.def("histogram_observe(Tensor x, Tensor(a!) counts, Tensor(b!) range) -> Tensor nonfinite",
        tags);
  m.def(
      "histogram_clip_range(Tensor counts, Tensor range, str method, int quant_min, "
      "int quant_max, bool symmetric, float percentile=99.99) -> Tensor",
      tags);

  // Scale and zero point from observed ranges (elementwise over min_val / max_val).
  m.def(
      "choose_qparams(Tensor min_val, Tensor max_val, int quant_min, int quant_max, "
      "bool symmetric) -> (Tensor scale, Tensor zero_point)",
      tags);

  // Integer inference (the exported model): int8 weights packed once, uint8
  // activations; output dequantized to float, or requantized to uint8 when
  // out_scale / out_zero_point are given. multiplier = x_scale * w_scale[n].
  m.def(
      "quantize_uint8(Tensor x, Tensor scale, Tensor zero_point, int quant_min=0, int quant_max=255) -> Tensor",
      tags);
  // The residual add of two uint8 activations (same shape), each on its own
  // grid: dequantized, added and ReLU'd in float32 as the float path does,
  // then float32 or quantized to the out grid.
  m.def(
      "add_uint8(Tensor a, float a_scale, int a_zero_point, Tensor b, float b_scale, int b_zero_point, "
      "bool relu=False, float? out_scale=None, int? out_zero_point=None, int out_quant_min=0, "
      "int out_quant_max=255) -> Tensor",
      tags);
  // Max pooling of uint8 activations (F.max_pool2d's windows and output
  // shape); output channels-last.
  m.def(
      "max_pool2d_uint8(Tensor x, int[2] kernel_size, int[2] stride, int[2] padding=0, int[2] dilation=1, "
      "bool ceil_mode=False) -> Tensor",
      tags);
  m.def("pack_linear_int8(Tensor weight) -> (Tensor packed, Tensor col_sums)", tags);
  m.def(
      "linear_int8(Tensor x, int x_zero_point, Tensor packed, Tensor col_sums, "
      "Tensor multiplier, Tensor? bias=None, float? out_scale=None, int? out_zero_point=None, "
      "bool relu=False) -> Tensor",
      tags);
  // INT8 Conv2d over the same packed weights, packed from
  // weight.permute(0, 2, 3, 1).flatten(1) (taps in (ky, kx, c) order): im2col of
  // the channels-last input (padding with x_zero_point) + the INT8 GEMM; output
  // channels-last.
  m.def(
      "conv2d_int8(Tensor x, int x_zero_point, Tensor packed, Tensor col_sums, Tensor multiplier, "
      "Tensor? bias, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
      "float? out_scale=None, int? out_zero_point=None, bool relu=False) -> Tensor",
      tags);
  // INT8 grouped Conv2d: weight [O, C / groups, kh, kw] packed by
  // pack_grouped_conv2d_int8 as runs of groups (groups of fewer outputs than a
  // GEMM panel merged, block-diagonal), one pack_linear_int8 matrix per run
  // ([runs, bytes], col_sums [runs, O / runs]); one im2col + GEMM per run,
  // each writing its channels of the channels-last output.
  m.def("pack_grouped_conv2d_int8(Tensor weight, int groups) -> (Tensor packed, Tensor col_sums)", tags);
  m.def(
      "grouped_conv2d_int8(Tensor x, int x_zero_point, Tensor packed, Tensor col_sums, Tensor multiplier, "
      "Tensor? bias, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
      "float? out_scale=None, int? out_zero_point=None, bool relu=False) -> Tensor",
      tags);
  // INT8 depthwise Conv2d (groups == channels): weight [C, 1, kh, kw] packed
  // by pack_depthwise_int8 (taps in pairs per block of channels), the
  // channels-last input (padding with x_zero_point), the GEMM's epilogue;
  // output channels-last.
  m.def("pack_depthwise_int8(Tensor weight) -> (Tensor packed, Tensor weight_sums)", tags);
  m.def(
      "depthwise_conv2d_int8(Tensor x, int x_zero_point, Tensor packed, Tensor weight_sums, Tensor multiplier, "
      "Tensor? bias, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
      "float? out_scale=None, int? out_zero_point=None, bool relu=False) -> Tensor",
      tags);
  // INT4 weight-only (batch-1 decoding): int4 weights two per byte with a
  // float scale per group of in_features; float activations and output.
  m.def("pack_linear_int4(Tensor weight) -> Tensor", tags);
  m.def("linear_int4(Tensor x, Tensor packed, Tensor scales, Tensor? bias=None) -> Tensor", tags);
  // W4A8: uint8 activations (zero point, scale) x the same packed int4
  // weights, exact integer sums per group; weight_sums[n] =
  // sum_g scales[n, g] * sum_{k in g} weight[n, k] carries the zero point.
  m.def("pack_linear_w4a8(Tensor weight, Tensor scales) -> (Tensor packed, Tensor weight_sums)", tags);
  m.def(
      "linear_w4a8(Tensor x, int x_zero_point, float x_scale, Tensor packed, Tensor scales, Tensor weight_sums, "
      "Tensor? bias=None) -> Tensor",
      tags);
  // W4A8 Conv2d: weights packed by pack_linear_w4a8 from their channels-last
  // rows (weight.permute(0, 2, 3, 1).flatten(1): groups run along input
  // channels within a tap), im2col of the channels-last input (padding with
  // x_zero_point) + the W4A8 kernel, optional ReLU; float output, or uint8
  // quantized onto (out_scale, out_zero_point); channels-last.
  m.def(
      "conv2d_w4a8(Tensor x, int x_zero_point, float x_scale, Tensor packed, Tensor scales, Tensor weight_sums, "
      "Tensor? bias, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
      "float? out_scale=None, int? out_zero_point=None, bool relu=False) -> Tensor",
      tags);
}
