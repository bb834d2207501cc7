// The INT4 ops of the exported model (CPU and Meta): packing two weights per
// byte, the weight-only GEMV for float activations (kernels/gemv_int4.h) and
// the W4A8 kernels for uint8 activations (kernels/gemm_w4a8.h), both reading
// the same packed weights; the W4A8 Conv2d runs them over channels-last
// im2col rows.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "im2col.h"
#include "packed_header.h"
#include "torchqat/kernels/gemm_w4a8.h"
#include "torchqat/kernels/gemv_int4.h"
#include "torchqat/kernels/quantize.h"

namespace torchqat {
namespace {

namespace k = kernels;

// The packed tensor (uint8): the header of packed_header.h, then [n][k / 2] bytes.
constexpr PackedFormat kInt4Format{'4', 1, "pack_linear_int4"};
constexpr int64_t kHeader = kPackedHeader;

at::Tensor pack_linear_int4_cpu(const at::Tensor& weight) {
  constexpr const char* op = "pack_linear_int4";
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2, op,
              ": weight must be a 2-D int8 tensor of int4 values [out_features, in_features], got ",
              weight.scalar_type(), " ", weight.sizes());
  const int64_t n = weight.size(0), kk = weight.size(1);
  TORCH_CHECK(kk % k::kInt4Block == 0, op, ": in_features must be a multiple of ", k::kInt4Block, ", got ", kk);
  const at::Tensor w = weight.contiguous();
  TORCH_CHECK(w.numel() == 0 || (w.min().item<int8_t>() >= -8 && w.max().item<int8_t>() <= 7), op,
              ": weight values must be int4, in [-8, 7]");
  auto packed = at::empty({kHeader + n * kk / 2}, w.options().dtype(at::kByte));
  uint8_t* data = packed.mutable_data_ptr<uint8_t>();
  write_packed_header(data, kInt4Format, kk);
  k::pack_int4_weights(w.const_data_ptr<int8_t>(), n, kk, kk, data + kHeader);
  return packed;
}

at::Tensor pack_linear_int4_meta(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2, "pack_linear_int4: weight must be 2-D, got ", weight.dim(), " dimensions");
  return at::empty_symint({kHeader + weight.sym_size(0) * weight.sym_size(1) / 2}, weight.options().dtype(at::kByte));
}

at::Tensor linear_int4_output(const at::Tensor& x, const c10::SymInt& n) {
  auto shape = x.sym_sizes().vec();
  shape.back() = n;
  return at::empty_symint(shape, x.options().dtype(at::kFloat));  // float32 output for float and uint8 inputs
}

// The int4 weights' geometry, checked against x's in_features.
struct Int4Weights {
  const uint8_t* q;
  const float* scales;
  int64_t n, groups, group_size;
};

// `x_has` says what x's kk values per row are ("64 features", or a conv's
// channels and patch), for the error when the weights were packed for others.
Int4Weights checked_int4_weights(const char* op, int64_t kk, const std::string& x_has, const at::Tensor& packed,
                                 const at::Tensor& scales) {
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.dim() == 1 && packed.is_contiguous() &&
                  packed.numel() >= kHeader && packed.is_cpu(),
              op, ": packed must be the contiguous 1-D uint8 CPU tensor from pack_linear_int4, got ",
              packed.scalar_type(), " ", packed.sizes());
  const uint8_t* h = packed.const_data_ptr<uint8_t>();
  const int64_t packed_k = read_packed_header(op, h, kInt4Format);
  TORCH_CHECK(packed_k == kk, op, ": x has ", x_has, " but the weights were packed for ", packed_k);
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.dim() == 2 && scales.is_contiguous() &&
                  scales.size(1) > 0 && scales.is_cpu(),
              op, ": scales must be a contiguous float32 CPU tensor [out_features, groups], got ",
              scales.scalar_type(), " ", scales.sizes(), " on ", scales.device());
  const int64_t n = scales.size(0), groups = scales.size(1);
  TORCH_CHECK(kk % groups == 0 && (kk / groups) % k::kInt4Block == 0, op, ": scales has ", groups,
              " groups per row, which must split in_features (", kk, ") into groups of a multiple of ",
              k::kInt4Block);
  TORCH_CHECK(packed.numel() == kHeader + n * kk / 2, op, ": packed holds ", packed.numel() - kHeader,
              " bytes but ", n, "x", kk, " int4 weights take ", n * kk / 2);
  return {h + kHeader, scales.const_data_ptr<float>(), n, groups, kk / groups};
}

Int4Weights checked_int4_weights(const char* op, int64_t kk, const at::Tensor& packed, const at::Tensor& scales) {
  return checked_int4_weights(op, kk, std::to_string(kk) + " features", packed, scales);
}

const float* checked_bias(const char* op, const std::optional<at::Tensor>& bias, int64_t n) {
  if (!bias) return nullptr;
  TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == n && bias->is_contiguous() && bias->is_cpu(), op,
              ": bias must be a contiguous float32 CPU tensor of ", n, " values, got ", bias->scalar_type(), " ",
              bias->sizes());
  return bias->const_data_ptr<float>();
}

at::Tensor linear_int4_cpu(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                           const std::optional<at::Tensor>& bias) {
  constexpr const char* op = "linear_int4";
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() >= 1 && x.is_cpu(), op,
              ": x must be a float32 CPU tensor [..., in_features], got ", x.scalar_type(), " on ", x.device());
  const int64_t kk = x.size(-1);
  const Int4Weights w = checked_int4_weights(op, kk, packed, scales);
  const at::Tensor a = x.reshape({-1, kk}).contiguous();
  at::Tensor out = linear_int4_output(x, c10::SymInt(w.n));
  k::GemvInt4Args args;
  args.x = a.const_data_ptr<float>();
  args.m = a.size(0);
  args.n = w.n;
  args.k = kk;
  args.q = w.q;
  args.scales = w.scales;
  args.group_size = w.group_size;
  args.bias = checked_bias(op, bias, w.n);
  args.y = out.mutable_data_ptr<float>();
  const auto& kernels = k::gemv_int4_kernels();
  at::parallel_for(0, w.n, 64, [&](int64_t nb, int64_t ne) { kernels.gemv(args, nb, ne); });
  return out;
}

at::Tensor linear_int4_meta(const at::Tensor& x, const at::Tensor&, const at::Tensor& scales,
                            const std::optional<at::Tensor>&) {
  return linear_int4_output(x, scales.sym_size(0));
}

std::tuple<at::Tensor, at::Tensor> pack_linear_w4a8_cpu(const at::Tensor& weight, const at::Tensor& scales) {
  constexpr const char* op = "pack_linear_w4a8";
  at::Tensor packed = pack_linear_int4_cpu(weight);
  const int64_t n = weight.size(0), kk = weight.size(1);
  TORCH_CHECK(scales.dim() == 2 && scales.size(0) == n, op, ": scales must be [out_features (", n,
              "), groups], got ", scales.sizes());
  const Int4Weights w = checked_int4_weights(op, kk, packed, scales);
  at::Tensor sums = at::empty({n}, scales.options());
  k::int4_weight_sums(weight.contiguous().const_data_ptr<int8_t>(), n, kk, kk, w.scales, w.group_size,
                      sums.mutable_data_ptr<float>());
  return {packed, sums};
}

std::tuple<at::Tensor, at::Tensor> pack_linear_w4a8_meta(const at::Tensor& weight, const at::Tensor& scales) {
  return {pack_linear_int4_meta(weight), at::empty_symint({weight.sym_size(0)}, scales.options())};
}

// The W4A8 kernel arguments but x, m and y, checked.
k::GemmW4A8Args w4a8_args(const char* op, int64_t x_zero_point, double x_scale, const Int4Weights& w,
                          const at::Tensor& weight_sums, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x_zero_point >= 0 && x_zero_point <= 255, op, ": x_zero_point must be in [0, 255], got ",
              x_zero_point);
  TORCH_CHECK(std::isfinite(x_scale) && x_scale > 0, op, ": x_scale must be positive and finite, got ", x_scale);
  TORCH_CHECK(weight_sums.scalar_type() == at::kFloat && weight_sums.dim() == 1 && weight_sums.numel() == w.n &&
                  weight_sums.is_contiguous() && weight_sums.is_cpu(),
              op, ": weight_sums must be the contiguous float32 CPU tensor of ", w.n,
              " values from pack_linear_w4a8, got ", weight_sums.scalar_type(), " ", weight_sums.sizes());
  k::GemmW4A8Args args;
  args.n = w.n;
  args.k = w.groups * w.group_size;
  args.x_zero = int32_t(x_zero_point);
  args.x_scale = float(x_scale);
  args.q = w.q;
  args.scales = w.scales;
  args.weight_sums = weight_sums.const_data_ptr<float>();
  args.group_size = w.group_size;
  args.bias = checked_bias(op, bias, w.n);
  return args;
}

// All rows, the output columns split over threads (each weight row is read by one thread).
void run_w4a8(const k::GemmW4A8Args& args) {
  const auto& kernels = k::gemm_w4a8_kernels();
  at::parallel_for(0, args.n, 64, [&](int64_t nb, int64_t ne) { kernels.gemm(args, nb, ne); });
}

at::Tensor linear_w4a8_cpu(const at::Tensor& x, int64_t x_zero_point, double x_scale, const at::Tensor& packed,
                           const at::Tensor& scales, const at::Tensor& weight_sums,
                           const std::optional<at::Tensor>& bias) {
  constexpr const char* op = "linear_w4a8";
  TORCH_CHECK(x.scalar_type() == at::kByte && x.dim() >= 1 && x.is_cpu(), op,
              ": x must be a uint8 CPU tensor [..., in_features], got ", x.scalar_type(), " on ", x.device());
  const int64_t kk = x.size(-1);
  const Int4Weights w = checked_int4_weights(op, kk, packed, scales);
  const at::Tensor a = x.reshape({-1, kk}).contiguous();
  at::Tensor out = linear_int4_output(x, c10::SymInt(w.n));
  k::GemmW4A8Args args = w4a8_args(op, x_zero_point, x_scale, w, weight_sums, bias);
  args.x = a.const_data_ptr<uint8_t>();
  args.m = a.size(0);
  args.y = out.mutable_data_ptr<float>();
  run_w4a8(args);
  return out;
}

at::Tensor linear_w4a8_meta(const at::Tensor& x, int64_t, double, const at::Tensor&, const at::Tensor& scales,
                            const at::Tensor&, const std::optional<at::Tensor>&) {
  return linear_int4_output(x, scales.sym_size(0));
}

constexpr int64_t kConvRowGrain = 240;  // patch rows per task when tasks split rows

// What the W4A8 conv does with the kernel's float rows: the fused ReLU, and
// with an output grid, quantization to uint8 (quantize.h: the rounding of
// the next layer's input quantizer; ReLU is a clamp at the zero point there,
// quantization being monotone with q(0) = zero point).
struct ConvOutput {
  bool relu = false;
  std::optional<k::QuantizeU8Args> grid;

  // Rows of `values` floats: in place (float output) or into `q`.
  void finish(float* y, int64_t values, uint8_t* q) const {
    if (grid) {
      k::quantize_kernels().quantize_u8(y, *grid, q, 0, values);
    } else if (relu) {
      for (int64_t i = 0; i < values; ++i) y[i] = std::max(y[i], 0.0f);  // vectorized by the compiler
    }
  }
};

at::Tensor conv2d_w4a8_cpu(const at::Tensor& x, int64_t x_zero_point, double x_scale, const at::Tensor& packed,
                           const at::Tensor& scales, const at::Tensor& weight_sums,
                           const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel, c10::IntArrayRef stride,
                           c10::IntArrayRef padding, c10::IntArrayRef dilation, std::optional<double> out_scale,
                           std::optional<int64_t> out_zero_point, bool relu) {
  constexpr const char* op = "conv2d_w4a8";
  TORCH_CHECK(x.scalar_type() == at::kByte && x.is_cpu(), op, ": x must be a uint8 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  const ConvGeometry g = conv_geometry(op, x.sizes(), kernel, stride, padding, dilation);
  const int64_t patch = g.kh * g.kw * g.c, rows = g.n * g.oh * g.ow;
  const std::string x_has = std::to_string(g.c) + " channels, " + std::to_string(patch) + " values per " +
                            std::to_string(g.kh) + "x" + std::to_string(g.kw) + " patch,";
  const Int4Weights w = checked_int4_weights(op, patch, x_has, packed, scales);
  k::GemmW4A8Args args = w4a8_args(op, x_zero_point, x_scale, w, weight_sums, bias);
  check_output_grid(op, out_scale, out_zero_point);
  ConvOutput finish{relu, std::nullopt};
  if (out_scale) {
    const float zero = float(*out_zero_point);
    finish.grid = k::QuantizeU8Args{float(*out_scale), zero, relu ? zero : 0.0f, 255.0f};
  }
  const at::Tensor nhwc = x.contiguous(at::MemoryFormat::ChannelsLast);  // no copy for a channels-last input
  at::Tensor out = conv_output_rows(x, g, w.n, out_scale.has_value());
  uint8_t* out_q = out_scale ? out.mutable_data_ptr<uint8_t>() : nullptr;
  args.m = rows;
  const ConvTaps taps{stride, padding, dilation};
  if (rows < 2 * kConvRowGrain) {  // few rows: all of them, the columns split over threads
    // A pointwise conv's NHWC input is already the patch matrix.
    const at::Tensor cols = is_pointwise(g, taps) ? nhwc : im2col(nhwc, x_zero_point, g, taps);
    const at::Tensor y = out_scale ? at::empty({rows, w.n}, x.options().dtype(at::kFloat)) : out;
    args.x = cols.const_data_ptr<uint8_t>();
    args.y = y.mutable_data_ptr<float>();
    run_w4a8(args);
    at::parallel_for(0, rows, 64, [&](int64_t b, int64_t e) {
      finish.finish(args.y + b * w.n, (e - b) * w.n, out_q ? out_q + b * w.n : nullptr);
    });
    return as_nchw(out, g);
  }
  // Many rows: tiles of patch rows (small enough to stay in cache), each
  // through all output columns, finished while in cache.
  const auto& kernels = k::gemm_w4a8_kernels();
  const int64_t tile = std::clamp<int64_t>((int64_t{1} << 20) / patch, 16, 2 * kConvRowGrain);
  float* out_f = out_scale ? nullptr : out.mutable_data_ptr<float>();
  const auto gemm_tile = [&](const uint8_t* patches, int64_t first_row, int64_t n_rows) {
    thread_local std::vector<float> staging;  // the float rows of a uint8 output
    k::GemmW4A8Args part = args;
    part.x = patches;
    part.m = n_rows;
    if (out_f) {
      part.y = out_f + first_row * w.n;
    } else {
      staging.resize(size_t(tile * w.n));
      part.y = staging.data();
    }
    kernels.gemm(part, 0, args.n);
    finish.finish(part.y, n_rows * w.n, out_q ? out_q + first_row * w.n : nullptr);
  };
  for_each_patch_tile(nhwc.const_data_ptr<uint8_t>(), x_zero_point, g, taps, tile, gemm_tile);
  return as_nchw(out, g);
}

at::Tensor conv2d_w4a8_meta(const at::Tensor& x, int64_t, double, const at::Tensor&, const at::Tensor& scales,
                            const at::Tensor&, const std::optional<at::Tensor>&, c10::IntArrayRef kernel,
                            c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                            std::optional<double> out_scale, std::optional<int64_t>, bool) {
  const ConvGeometry g = conv_geometry("conv2d_w4a8", x.sizes(), kernel, stride, padding, dilation);
  return as_nchw(conv_output_rows(x, g, scales.size(0), out_scale.has_value()), g);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("pack_linear_int4", &pack_linear_int4_cpu);
  m.impl("linear_int4", &linear_int4_cpu);
  m.impl("pack_linear_w4a8", &pack_linear_w4a8_cpu);
  m.impl("linear_w4a8", &linear_w4a8_cpu);
  m.impl("conv2d_w4a8", &conv2d_w4a8_cpu);
}

TORCH_LIBRARY_IMPL(torchqat, Meta, m) {
  m.impl("pack_linear_int4", &pack_linear_int4_meta);
  m.impl("linear_int4", &linear_int4_meta);
  m.impl("pack_linear_w4a8", &pack_linear_w4a8_meta);
  m.impl("linear_w4a8", &linear_w4a8_meta);
  m.impl("conv2d_w4a8", &conv2d_w4a8_meta);
}

}  // namespace torchqat
