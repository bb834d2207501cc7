// The INT8 Linear and Conv2d ops of the exported model (CPU and Meta):
// weight packing and the GEMM with its fused epilogue (kernels/gemm_int8.h);
// Conv2d is im2col over the channels-last input (padding with the input zero
// point) + the same GEMM, a grouped Conv2d one such GEMM per run of groups.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "im2col.h"
#include "int8_op_checks.h"
#include "packed_header.h"
#include "torchqat/kernels/gemm_int8.h"

namespace torchqat {
namespace {

namespace k = kernels;

// The packed tensor (int8): the header of packed_header.h, then the kernels' layout.
constexpr PackedFormat kInt8Format{'Q', 2, "pack_linear_int8"};
constexpr int64_t kHeader = kPackedHeader;

void check_packed(const char* op, const at::Tensor& packed, const at::Tensor& col_sums, int64_t n_k) {
  TORCH_CHECK(packed.scalar_type() == at::kChar && packed.dim() == 1 && packed.is_contiguous() &&
                  packed.numel() >= kHeader,
              op, ": packed must be the contiguous 1-D int8 tensor from pack_linear_int8, got ",
              packed.scalar_type(), " ", packed.sizes());
  if (packed.device().is_cpu()) {
    const int64_t in_features =
        read_packed_header(op, reinterpret_cast<const uint8_t*>(packed.const_data_ptr<int8_t>()), kInt8Format);
    TORCH_CHECK(in_features == n_k, op, ": x has ", n_k, " features but the weights were packed for ", in_features);
  }
  const int64_t n = col_sums.numel();
  TORCH_CHECK(packed.numel() == kHeader + k::packed_bytes(n, n_k), op, ": packed holds ",
              packed.numel() - kHeader, " bytes but ", n, "x", n_k, " weights (col_sums has ", n,
              ") take ", k::packed_bytes(n, n_k));
}

std::tuple<at::Tensor, at::Tensor> pack_linear_int8_cpu(const at::Tensor& weight) {
  constexpr const char* op = "pack_linear_int8";
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2, op,
              ": weight must be a 2-D int8 tensor [out_features, in_features], got ", weight.scalar_type(),
              " ", weight.sizes());
  TORCH_CHECK(weight.size(1) <= k::kMaxK, op, ": in_features must be at most ", k::kMaxK,
              " (the int32 accumulator's exact range), got ", weight.size(1));
  const at::Tensor w = weight.contiguous();
  const int64_t n = w.size(0), kk = w.size(1);
  auto packed = at::empty({kHeader + k::packed_bytes(n, kk)}, w.options());
  auto col_sums = at::empty({n}, w.options().dtype(at::kInt));
  int8_t* data = packed.mutable_data_ptr<int8_t>();
  write_packed_header(reinterpret_cast<uint8_t*>(data), kInt8Format, kk);
  k::pack_int8_weights(w.const_data_ptr<int8_t>(), n, kk, kk, data + kHeader, col_sums.mutable_data_ptr<int32_t>());
  return {packed, col_sums};
}

std::tuple<at::Tensor, at::Tensor> pack_linear_int8_meta(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2, "pack_linear_int8: weight must be 2-D, got ", weight.dim(), " dimensions");
  const c10::SymInt n = weight.sym_size(0), kk = weight.sym_size(1);
  const c10::SymInt count = kHeader + ((n + k::kPanel - 1) / k::kPanel) * ((kk + 1) / 2) * (k::kPanel * 2);
  return {at::empty_symint({count}, weight.options()),
          at::empty_symint({n}, weight.options().dtype(at::kInt))};
}

at::Tensor linear_int8_output(const at::Tensor& x, const c10::SymInt& n, bool requantize) {
  auto shape = x.sym_sizes().vec();
  shape.back() = n;
  return at::empty_symint(shape, x.options().dtype(requantize ? at::kByte : at::kFloat));
}

// Checks what linear_int8 and conv2d_int8 share; the GEMM arguments for an
// A of `kk` columns (a, m and out are set by the caller).
k::GemmInt8Args checked_gemm_args(const char* op, int64_t kk, int64_t x_zero_point, const at::Tensor& packed,
                                  const at::Tensor& col_sums, const at::Tensor& multiplier,
                                  const std::optional<at::Tensor>& bias, std::optional<double> out_scale,
                                  std::optional<int64_t> out_zero_point, bool relu) {
  check_packed(op, packed, col_sums, kk);
  k::GemmInt8Args args = checked_epilogue(op, col_sums.numel(), x_zero_point, multiplier, bias, out_scale,
                                          out_zero_point, relu);
  args.lda = kk;
  args.b = {packed.const_data_ptr<int8_t>() + kHeader, col_sums.const_data_ptr<int32_t>(), args.b.n, kk};
  return args;
}

constexpr int64_t kRowGrain = 240;  // rows per task when tasks split rows (4 kernel row blocks)

// The GEMM over threads. More rows than columns: tasks take row ranges and
// every panel (A is read once); otherwise whole panels and every row (each
// weight panel is read by one thread). Rows are blocked inside the kernel.
void run_gemm(const k::GemmInt8Args& args) {
  const auto& kernels = k::gemm_int8_kernels();
  const int64_t panels = args.b.panels();
  if (args.m >= 2 * kRowGrain && args.m >= args.b.n) {
    at::parallel_for(0, args.m, kRowGrain, [&](int64_t mb, int64_t me) { kernels.gemm(args, mb, me, 0, panels); });
  } else {
    at::parallel_for(0, panels, 1, [&](int64_t pb, int64_t pe) { kernels.gemm(args, 0, args.m, pb, pe); });
  }
}

at::Tensor linear_int8_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                           const at::Tensor& col_sums, const at::Tensor& multiplier,
                           const std::optional<at::Tensor>& bias, std::optional<double> out_scale,
                           std::optional<int64_t> out_zero_point, bool relu) {
  constexpr const char* op = "linear_int8";
  TORCH_CHECK(x.scalar_type() == at::kByte && x.dim() >= 1 && x.is_cpu(), op,
              ": x must be a uint8 CPU tensor [..., in_features], got ", x.scalar_type(), " on ", x.device());
  const int64_t kk = x.size(-1);
  k::GemmInt8Args args = checked_gemm_args(op, kk, x_zero_point, packed, col_sums, multiplier, bias, out_scale,
                                           out_zero_point, relu);
  const at::Tensor a = x.reshape({-1, kk}).contiguous();
  at::Tensor out = linear_int8_output(x, c10::SymInt(args.b.n), out_scale.has_value());
  args.a = a.const_data_ptr<uint8_t>();
  args.m = a.size(0);
  args.out = out.data_ptr();
  run_gemm(args);
  return out;
}

at::Tensor linear_int8_meta(const at::Tensor& x, int64_t, const at::Tensor&, const at::Tensor& col_sums,
                            const at::Tensor&, const std::optional<at::Tensor>&, std::optional<double> out_scale,
                            std::optional<int64_t>, bool) {
  return linear_int8_output(x, col_sums.sym_size(0), out_scale.has_value());
}

at::Tensor conv2d_int8_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                           const at::Tensor& col_sums, const at::Tensor& multiplier,
                           const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel, c10::IntArrayRef stride,
                           c10::IntArrayRef padding, c10::IntArrayRef dilation, std::optional<double> out_scale,
                           std::optional<int64_t> out_zero_point, bool relu) {
  constexpr const char* op = "conv2d_int8";
  TORCH_CHECK(x.scalar_type() == at::kByte && x.is_cpu(), op, ": x must be a uint8 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  const ConvGeometry g = conv_geometry(op, x.sizes(), kernel, stride, padding, dilation);
  const int64_t patch = g.kh * g.kw * g.c, rows = g.n * g.oh * g.ow;
  k::GemmInt8Args args = checked_gemm_args(op, patch, x_zero_point, packed, col_sums, multiplier, bias, out_scale,
                                           out_zero_point, relu);
  const at::Tensor nhwc = x.contiguous(at::MemoryFormat::ChannelsLast);  // no copy for a channels-last input
  at::Tensor out = conv_output_rows(x, g, args.b.n, out_scale.has_value());
  args.m = rows;
  args.out = out.data_ptr();
  const ConvTaps taps{stride, padding, dilation};
  if (is_pointwise(g, taps)) {
    args.a = nhwc.const_data_ptr<uint8_t>();  // the NHWC input is already the [N*H*W, C] matrix
    run_gemm(args);
    return as_nchw(out, g);
  }
  // Few rows: one im2col, then the GEMM split over panels. Many rows: tiles
  // of rows, each GEMM'd over all panels while its patches are in cache.
  if (rows < 2 * kRowGrain || rows < args.b.n) {
    const at::Tensor cols = im2col(nhwc, x_zero_point, g, taps);
    args.a = cols.const_data_ptr<uint8_t>();
    run_gemm(args);
    return as_nchw(out, g);
  }
  const auto& kernels = k::gemm_int8_kernels();
  const size_t out_bytes = out_scale ? 1 : 4;
  const int64_t tile = std::clamp<int64_t>((int64_t{192} << 10) / patch / 60 * 60, 60, kRowGrain);
  for_each_patch_tile(nhwc.const_data_ptr<uint8_t>(), x_zero_point, g, taps, tile,
                      [&](const uint8_t* patches, int64_t first_row, int64_t n_rows) {
                        k::GemmInt8Args part = args;
                        part.a = patches;
                        part.m = n_rows;
                        part.out = static_cast<uint8_t*>(args.out) + size_t(first_row * args.ldc) * out_bytes;
                        kernels.gemm(part, 0, n_rows, 0, args.b.panels());
                      });
  return as_nchw(out, g);
}

at::Tensor conv2d_int8_meta(const at::Tensor& x, int64_t, const at::Tensor&, const at::Tensor& col_sums,
                            const at::Tensor&, const std::optional<at::Tensor>&, c10::IntArrayRef kernel,
                            c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                            std::optional<double> out_scale, std::optional<int64_t>, bool) {
  const ConvGeometry g = conv_geometry("conv2d_int8", x.sizes(), kernel, stride, padding, dilation);
  return as_nchw(conv_output_rows(x, g, col_sums.size(0), out_scale.has_value()), g);
}

// Groups of a grouped conv run together, `merged` at a time, when they have
// fewer outputs than a GEMM panel: as one group whose weights hold them on the
// block diagonal (the zeros add nothing to the sums) they fill the panel's 16
// columns and take one GEMM call where they took `merged`. ResNeXt's groups of
// 4 outputs, run one by one, left 12 of 16 columns idle.
int64_t merged_groups(int64_t groups, int64_t out_channels) {
  const int64_t per_group = out_channels / groups;
  int64_t merged = 1;
  for (int64_t m = 2; m * per_group <= k::kPanel; ++m) {
    if (groups % m == 0) merged = m;
  }
  return merged;
}

void check_grouped_weight(const char* op, const at::Tensor& weight, int64_t groups) {
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 4, op,
              ": weight must be a 4-D int8 tensor [out_channels, in_channels / groups, kernel_h, kernel_w], got ",
              weight.scalar_type(), " ", weight.sizes());
  TORCH_CHECK(groups >= 1 && weight.size(0) % groups == 0, op, ": groups must be >= 1 and divide the ",
              weight.size(0), " output channels, got ", groups);
}

std::tuple<at::Tensor, at::Tensor> pack_grouped_conv2d_int8_cpu(const at::Tensor& weight, int64_t groups) {
  constexpr const char* op = "pack_grouped_conv2d_int8";
  check_grouped_weight(op, weight, groups);
  const int64_t merged = merged_groups(groups, weight.size(0)), runs = groups / merged;
  const int64_t per_group = weight.size(0) / groups, cg = weight.size(1);
  // [runs, merged, per_group, merged, cg, kh, kw], each group on its run's diagonal.
  const at::Tensor blocks = weight.reshape({runs, merged, per_group, cg, weight.size(2), weight.size(3)});
  at::Tensor full = at::zeros({runs, merged, per_group, merged, cg, weight.size(2), weight.size(3)},
                              weight.options());
  for (int64_t i = 0; i < merged; ++i) full.select(3, i).select(1, i).copy_(blocks.select(1, i));
  const at::Tensor rows = full.reshape({weight.size(0), merged * cg, weight.size(2), weight.size(3)})
                              .permute({0, 2, 3, 1})
                              .reshape({runs, merged * per_group, -1});
  std::vector<at::Tensor> packed, sums;
  for (int64_t r = 0; r < runs; ++r) {
    auto [p, s] = pack_linear_int8_cpu(rows[r]);
    packed.push_back(p);
    sums.push_back(s);
  }
  return {at::stack(packed), at::stack(sums)};
}

std::tuple<at::Tensor, at::Tensor> pack_grouped_conv2d_int8_meta(const at::Tensor& weight, int64_t groups) {
  check_grouped_weight("pack_grouped_conv2d_int8", weight, groups);
  const int64_t merged = merged_groups(groups, weight.size(0)), runs = groups / merged;
  const int64_t n = weight.size(0) / runs, kk = merged * weight.size(1) * weight.size(2) * weight.size(3);
  return {at::empty({runs, kHeader + k::packed_bytes(n, kk)}, weight.options()),
          at::empty({runs, n}, weight.options().dtype(at::kInt))};
}

// The geometry of one run (its share of the input channels), after checking
// the packed runs.
ConvGeometry grouped_geometry(const char* op, const at::Tensor& x, const at::Tensor& packed,
                              const at::Tensor& col_sums, c10::IntArrayRef kernel, c10::IntArrayRef stride,
                              c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  ConvGeometry g = conv_geometry(op, x.sizes(), kernel, stride, padding, dilation);
  TORCH_CHECK(packed.dim() == 2 && col_sums.dim() == 2 && packed.size(0) == col_sums.size(0) && packed.size(0) >= 1,
              op, ": packed and col_sums must be the [runs, ...] tensors from pack_grouped_conv2d_int8, got ",
              packed.sizes(), " and ", col_sums.sizes());
  const int64_t runs = packed.size(0);
  TORCH_CHECK(g.c % runs == 0, op, ": x has ", g.c, " channels, not a multiple of the weights' ", runs, " runs");
  g.c /= runs;
  return g;
}

at::Tensor grouped_conv2d_int8_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& packed,
                                   const at::Tensor& col_sums, const at::Tensor& multiplier,
                                   const std::optional<at::Tensor>& bias, c10::IntArrayRef kernel,
                                   c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                   std::optional<double> out_scale, std::optional<int64_t> out_zero_point,
                                   bool relu) {
  constexpr const char* op = "grouped_conv2d_int8";
  TORCH_CHECK(x.scalar_type() == at::kByte && x.is_cpu(), op, ": x must be a uint8 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  const ConvGeometry g = grouped_geometry(op, x, packed, col_sums, kernel, stride, padding, dilation);
  const int64_t runs = packed.size(0), per_run = col_sums.size(1), channels = g.c * runs;
  const int64_t patch = g.kh * g.kw * g.c, rows = g.n * g.oh * g.ow;
  k::GemmInt8Args args = checked_epilogue(op, runs * per_run, x_zero_point, multiplier, bias, out_scale,
                                          out_zero_point, relu);
  for (int64_t r = 0; r < runs; ++r) check_packed(op, packed[r], col_sums[r], patch);
  const at::Tensor nhwc = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out = conv_output_rows(x, g, runs * per_run, out_scale.has_value());
  const uint8_t* in = nhwc.const_data_ptr<uint8_t>();
  const size_t out_bytes = out_scale ? 1 : 4;
  const auto& kernels = k::gemm_int8_kernels();
  const ConvTaps taps{stride, padding, dilation};
  // Tasks take (run, tile of rows): each im2cols the run's channels of its
  // rows and writes the run's columns of the output.
  const int64_t tile = std::clamp<int64_t>((int64_t{192} << 10) / patch / 60 * 60, 60, kRowGrain);
  const int64_t tiles = (rows + tile - 1) / tile;
  at::parallel_for(0, runs * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> patches(size_t(tile * patch));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / tiles, first = task % tiles * tile, n_rows = std::min(tile, rows - first);
      im2col_rows(in + r * g.c, patches.data(), first, first + n_rows, x_zero_point, g, taps, channels);
      k::GemmInt8Args part = args;
      part.a = patches.data();
      part.lda = patch;
      part.m = n_rows;
      part.b = {packed[r].const_data_ptr<int8_t>() + kHeader, col_sums[r].const_data_ptr<int32_t>(), per_run, patch};
      part.multiplier = args.multiplier + r * per_run;
      part.bias = args.bias ? args.bias + r * per_run : nullptr;
      part.out = static_cast<uint8_t*>(out.data_ptr()) + size_t(first * args.ldc + r * per_run) * out_bytes;
      kernels.gemm(part, 0, n_rows, 0, part.b.panels());
    }
  });
  return as_nchw(out, g);
}

at::Tensor grouped_conv2d_int8_meta(const at::Tensor& x, int64_t, const at::Tensor& packed, const at::Tensor& col_sums,
                                    const at::Tensor&, const std::optional<at::Tensor>&, c10::IntArrayRef kernel,
                                    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                    std::optional<double> out_scale, std::optional<int64_t>, bool) {
  const ConvGeometry g =
      grouped_geometry("grouped_conv2d_int8", x, packed, col_sums, kernel, stride, padding, dilation);
  return as_nchw(conv_output_rows(x, g, col_sums.size(0) * col_sums.size(1), out_scale.has_value()), g);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("pack_linear_int8", &pack_linear_int8_cpu);
  m.impl("linear_int8", &linear_int8_cpu);
  m.impl("conv2d_int8", &conv2d_int8_cpu);
  m.impl("pack_grouped_conv2d_int8", &pack_grouped_conv2d_int8_cpu);
  m.impl("grouped_conv2d_int8", &grouped_conv2d_int8_cpu);
}

TORCH_LIBRARY_IMPL(torchqat, Meta, m) {
  m.impl("pack_linear_int8", &pack_linear_int8_meta);
  m.impl("linear_int8", &linear_int8_meta);
  m.impl("conv2d_int8", &conv2d_int8_meta);
  m.impl("pack_grouped_conv2d_int8", &pack_grouped_conv2d_int8_meta);
  m.impl("grouped_conv2d_int8", &grouped_conv2d_int8_meta);
}

}  // namespace torchqat
