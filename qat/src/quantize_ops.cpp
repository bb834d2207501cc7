// quantize_uint8: float32 activations -> uint8, the input of the exported
// model's integer layers (CPU and Meta). The integers are those of
// fake_quantize with the same qparams (kernels/quantize.h); the memory format
// (channels-last or not) is kept.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>

#include "memory_format.h"
#include "torchqat/kernels/quantize.h"

namespace torchqat {
namespace {

namespace k = kernels;

void check_args(const char* op, const at::Tensor& scale, const at::Tensor& zero_point, int64_t qmin, int64_t qmax) {
  TORCH_CHECK(scale.numel() == 1 && zero_point.numel() == 1, op,
              ": quantizes per tensor: scale and zero_point must hold one value each, got ", scale.sizes(), " and ",
              zero_point.sizes());
  TORCH_CHECK(0 <= qmin && qmin <= qmax && qmax <= 255, op,
              ": quant_min and quant_max must satisfy 0 <= quant_min <= quant_max <= 255, got ", qmin, " and ", qmax);
}

at::Tensor quantize_uint8_cpu(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                              int64_t qmin, int64_t qmax) {
  constexpr const char* op = "quantize_uint8";
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_cpu(), op, ": x must be a float32 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  check_args(op, scale, zero_point, qmin, qmax);
  k::QuantizeU8Args args;
  args.scale = scale.item<float>();
  args.zero_point = float(zero_point.item<int64_t>());
  TORCH_CHECK(std::isfinite(args.scale) && args.scale > 0, op, ": scale must be finite and > 0, got ", args.scale);
  TORCH_CHECK(args.zero_point >= qmin && args.zero_point <= qmax, op, ": zero_point must be in [quant_min, quant_max] = [",
              qmin, ", ", qmax, "], got ", args.zero_point);
  args.qmin = float(qmin);
  args.qmax = float(qmax);
  const at::MemoryFormat format = format_of(x);
  const at::Tensor src = x.contiguous(format);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kByte).memory_format(format));
  const float* in = src.const_data_ptr<float>();
  uint8_t* dst = out.mutable_data_ptr<uint8_t>();
  const auto fn = k::quantize_kernels().quantize_u8;
  at::parallel_for(0, x.numel(), 1 << 15, [&](int64_t begin, int64_t end) { fn(in, args, dst, begin, end); });
  return out;
}

at::Tensor quantize_uint8_meta(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                               int64_t qmin, int64_t qmax) {
  check_args("quantize_uint8", scale, zero_point, qmin, qmax);
  return at::empty_symint(x.sym_sizes(), x.options().dtype(at::kByte).memory_format(format_of(x)));
}

}  // namespace

TORCH_LIBRARY_IMPL(torchqat, CPU, m) { m.impl("quantize_uint8", &quantize_uint8_cpu); }

TORCH_LIBRARY_IMPL(torchqat, Meta, m) { m.impl("quantize_uint8", &quantize_uint8_meta); }

}  // namespace torchqat
