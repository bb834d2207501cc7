// add_uint8: the residual add of two uint8 activations on their own grids
// (kernels/add_u8.h), optional ReLU, output float32 or uint8 on the grid of
// the layers it feeds (CPU and Meta). Operands of one shape; the output keeps
// a's memory format (channels-last or not).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "memory_format.h"
#include "torchqat/kernels/add_u8.h"

namespace torchqat {
namespace {

namespace k = kernels;
constexpr const char* kOp = "add_uint8";

void check_grid(const char* name, double scale, int64_t zero_point) {
  TORCH_CHECK(std::isfinite(scale) && scale > 0, kOp, ": ", name, "_scale must be finite and > 0, got ", scale);
  TORCH_CHECK(zero_point >= 0 && zero_point <= 255, kOp, ": ", name, "_zero_point must be in [0, 255], got ",
              zero_point);
}

void check_args(const at::Tensor& a, double a_scale, int64_t a_zero, const at::Tensor& b, double b_scale,
                int64_t b_zero, std::optional<double> out_scale, std::optional<int64_t> out_zero, int64_t out_qmin,
                int64_t out_qmax) {
  TORCH_CHECK(a.scalar_type() == at::kByte && b.scalar_type() == at::kByte, kOp,
              ": a and b must be uint8 tensors, got ", a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK(a.sizes() == b.sizes(), kOp, ": a and b must have the same shape (no broadcasting), got ", a.sizes(),
              " and ", b.sizes());
  check_grid("a", a_scale, a_zero);
  check_grid("b", b_scale, b_zero);
  TORCH_CHECK(out_scale.has_value() == out_zero.has_value(), kOp,
              ": give out_scale and out_zero_point together (uint8 output) or neither (float output)");
  TORCH_CHECK(0 <= out_qmin && out_qmin <= out_qmax && out_qmax <= 255, kOp,
              ": out_quant_min and out_quant_max must satisfy 0 <= out_quant_min <= out_quant_max <= 255, got ",
              out_qmin, " and ", out_qmax);
  if (out_scale) {
    check_grid("out", *out_scale, *out_zero);
    TORCH_CHECK(*out_zero >= out_qmin && *out_zero <= out_qmax, kOp,
                ": out_zero_point must be in [out_quant_min, out_quant_max] = [", out_qmin, ", ", out_qmax,
                "], got ", *out_zero);
  }
}

at::Tensor add_uint8_cpu(const at::Tensor& a, double a_scale, int64_t a_zero, const at::Tensor& b, double b_scale,
                         int64_t b_zero, bool relu, std::optional<double> out_scale, std::optional<int64_t> out_zero,
                         int64_t out_qmin, int64_t out_qmax) {
  check_args(a, a_scale, a_zero, b, b_scale, b_zero, out_scale, out_zero, out_qmin, out_qmax);
  TORCH_CHECK(a.is_cpu() && b.is_cpu(), kOp, ": a and b must be CPU tensors, got ", a.device(), " and ", b.device());
  // Scales in float32, as the float path (and fake_quantize) takes them.
  const k::AddU8Args args{float(a_scale), float(a_zero), float(b_scale), float(b_zero), relu};
  const at::MemoryFormat format = format_of(a);
  const at::Tensor qa = a.contiguous(format), qb = b.contiguous(format);
  const uint8_t* pa = qa.const_data_ptr<uint8_t>();
  const uint8_t* pb = qb.const_data_ptr<uint8_t>();
  const auto& kernels = k::add_u8_kernels();
  constexpr int64_t grain = 1 << 15;
  if (!out_scale) {
    at::Tensor out = at::empty(a.sizes(), a.options().dtype(at::kFloat).memory_format(format));
    float* dst = out.mutable_data_ptr<float>();
    at::parallel_for(0, a.numel(), grain, [&](int64_t begin, int64_t end) {
      kernels.to_float(pa, pb, args, dst, begin, end);
    });
    return out;
  }
  const k::QuantizeU8Args grid{float(*out_scale), float(*out_zero), float(out_qmin), float(out_qmax)};
  at::Tensor out = at::empty(a.sizes(), a.options().memory_format(format));
  uint8_t* dst = out.mutable_data_ptr<uint8_t>();
  at::parallel_for(0, a.numel(), grain, [&](int64_t begin, int64_t end) {
    kernels.to_u8(pa, pb, args, grid, dst, begin, end);
  });
  return out;
}

at::Tensor add_uint8_meta(const at::Tensor& a, double a_scale, int64_t a_zero, const at::Tensor& b, double b_scale,
                          int64_t b_zero, bool relu, std::optional<double> out_scale, std::optional<int64_t> out_zero,
                          int64_t out_qmin, int64_t out_qmax) {
  check_args(a, a_scale, a_zero, b, b_scale, b_zero, out_scale, out_zero, out_qmin, out_qmax);
  const auto dtype = out_scale ? at::kByte : at::kFloat;
  return at::empty_symint(a.sym_sizes(), a.options().dtype(dtype).memory_format(format_of(a)));
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) { m.impl("add_uint8", &add_uint8_cpu); }

TORCH_LIBRARY_IMPL(torchqat, Meta, m) { m.impl("add_uint8", &add_uint8_meta); }

}  // namespace torchqat
