// The INT8 Linear and Conv2d ops of the exported model (CPU and Meta):
// weight packing and the GEMM with its fused epilogue (kernels/gemm_int8.h);
// Conv2d is im2col over the channels-last input (padding with the input zero
// point) + the same GEMM.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

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

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) {
  m.impl("pack_linear_int8", &pack_linear_int8_cpu);
  m.impl("linear_int8", &linear_int8_cpu);
  m.impl("conv2d_int8", &conv2d_int8_cpu);
}

TORCH_LIBRARY_IMPL(torchqat, Meta, m) {
  m.impl("pack_linear_int8", &pack_linear_int8_meta);
  m.impl("linear_int8", &linear_int8_meta);
  m.impl("conv2d_int8", &conv2d_int8_meta);
}

}  // namespace torchqat
