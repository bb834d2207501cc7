#include "fakequant/qparams.h"

#include <c10/util/irange.h>

#include <cmath>
#include <limits>

namespace torchqat {
namespace {

bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

std::vector<int64_t> expected_group_shape(const at::Tensor& x, int64_t group_size) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() /= group_size;
  return shape;
}

// On CUDA: one fused device-side assertion, no host synchronisation.
void assert_on_device(const at::Tensor& ok, const char* message) {
  at::_assert_async(ok.all(), message);
}

}  // namespace

void check_input_dtype(const char* op, const at::Tensor& x, const char* name) {
  TORCH_CHECK(is_supported_float(x.scalar_type()), op, ": ", name,
              " must be a float32, float16 or bfloat16 tensor, got ", x.scalar_type());
}

kernels::DType kernel_dtype(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kHalf:
      return kernels::DType::kFloat16;
    case at::kBFloat16:
      return kernels::DType::kBFloat16;
    default:
      return kernels::DType::kFloat32;
  }
}

void check_quant_range(const char* op, int64_t quant_min, int64_t quant_max) {
  TORCH_CHECK(quant_min < quant_max, op, ": quant_min (", quant_min,
              ") must be less than quant_max (", quant_max, ")");
  constexpr int64_t lo = std::numeric_limits<int32_t>::min();
  constexpr int64_t hi = std::numeric_limits<int32_t>::max();
  TORCH_CHECK(quant_min >= lo && quant_max <= hi, op, ": [quant_min, quant_max] = [", quant_min,
              ", ", quant_max, "] must lie inside the int32 range [", lo, ", ", hi, "]");
}

void check_same_device(const char* op, const at::Tensor& x, const char* x_name,
                       const at::Tensor& other, const char* other_name) {
  TORCH_CHECK(x.device() == other.device(), op, ": ", other_name, " is on ", other.device(),
              " but ", x_name, " is on ", x.device(), "; both must be on the same device");
}

Granularity resolve_granularity(const char* op, const at::Tensor& x,
                                std::optional<int64_t> axis, std::optional<int64_t> group_size) {
  const int64_t numel = x.numel();
  TORCH_CHECK(!(axis.has_value() && group_size.has_value()), op,
              ": give axis (per-channel) or group_size (per-group), not both");
  if (axis.has_value()) {
    const int64_t dim = x.dim();
    TORCH_CHECK(dim >= 1, op, ": axis needs x with at least one dimension, got a 0-d tensor");
    TORCH_CHECK(*axis >= -dim && *axis < dim, op, ": axis (", *axis, ") is out of range for x with ",
                dim, " dimensions; allowed: [", -dim, ", ", dim - 1, "]");
    const int64_t a = *axis < 0 ? *axis + dim : *axis;
    int64_t inner = 1;
    for (int64_t d = a + 1; d < dim; ++d) inner *= x.size(d);
    return {Granularity::kPerChannel,
            {std::max<int64_t>(x.size(a), 1), std::max<int64_t>(inner, 1)},
            {x.size(a)},
            a};
  }
  if (group_size.has_value()) {
    const int64_t g = *group_size;
    TORCH_CHECK(g >= 1, op, ": group_size must be >= 1, got ", g);
    TORCH_CHECK(x.dim() >= 1, op, ": group_size needs x with at least one dimension");
    const int64_t last = x.size(-1);
    TORCH_CHECK(last % g == 0, op, ": group_size (", g, ") must divide the last dimension of x (",
                last, ")");
    return {Granularity::kPerGroup, {std::max<int64_t>(numel / g, 1), g},
            expected_group_shape(x, g), -1};
  }
  return {Granularity::kPerTensor, {1, std::max<int64_t>(numel, 1)}, {}, -1};
}

kernels::ChannelLayout resolve_layout(const char* op, const char* param_name,
                                      const at::Tensor& x, const at::Tensor& param,
                                      std::optional<int64_t> axis,
                                      std::optional<int64_t> group_size) {
  const auto g = resolve_granularity(op, x, axis, group_size);
  switch (g.kind) {
    case Granularity::kPerChannel:
      TORCH_CHECK(param.dim() == 1 && param.size(0) == g.param_shape[0], op, ": per-channel ",
                  param_name, " must be 1-D of length x.size(", g.axis, ") = ", g.param_shape[0],
                  ", got shape ", param.sizes());
      break;
    case Granularity::kPerGroup:
      TORCH_CHECK(param.sizes().vec() == g.param_shape, op, ": per-group ", param_name,
                  " must have shape x.shape[:-1] + (x.shape[-1] // group_size,) = ",
                  at::IntArrayRef(g.param_shape), ", got ", param.sizes());
      break;
    case Granularity::kPerTensor:
      TORCH_CHECK(param.numel() == 1, op, ": per-tensor ", param_name,
                  " must have exactly one element, got shape ", param.sizes(),
                  " (pass axis= for per-channel or group_size= for per-group)");
      break;
  }
  return g.layout;
}

kernels::ChannelLayout check_affine_operands(const char* op, const at::Tensor& x,
                                             const at::Tensor& scale,
                                             const at::Tensor& zero_point, int64_t quant_min,
                                             int64_t quant_max, std::optional<int64_t> axis,
                                             std::optional<int64_t> group_size) {
  check_input_dtype(op, x);
  check_quant_range(op, quant_min, quant_max);
  check_same_device(op, x, "x", scale, "scale");
  check_same_device(op, x, "x", zero_point, "zero_point");
  const auto layout = resolve_layout(op, "scale", x, scale, axis, group_size);
  resolve_layout(op, "zero_point", x, zero_point, axis, group_size);
  return layout;
}

at::Tensor checked_scale(const char* op, const at::Tensor& scale) {
  TORCH_CHECK(at::isFloatingType(scale.scalar_type()), op,
              ": scale must be a floating-point tensor, got ", scale.scalar_type());
  at::Tensor s = scale.detach().to(at::kFloat).contiguous();
  if (s.is_cpu()) {
    // Name the smallest offending value (NaN first): the one a diverging run reached.
    const float* p = s.const_data_ptr<float>();
    int64_t worst = -1, offending = 0;
    for (const auto i : c10::irange(s.numel())) {
      if (std::isfinite(p[i]) && p[i] > 0.0f) continue;
      ++offending;
      if (worst < 0 || std::isnan(p[i]) || (!std::isnan(p[worst]) && p[i] < p[worst])) worst = i;
    }
    TORCH_CHECK(offending == 0, op, ": scale must be finite and > 0, got ", p[worst],
                " at index ", worst, offending > 1 ? " (the smallest of " : "",
                offending > 1 ? std::to_string(offending) + " offending values)" : "");
  } else {
    assert_on_device(at::logical_and(s.isfinite(), s.gt(0)),
                     "torchqat: scale must be finite and > 0");
  }
  return s;
}

at::Tensor checked_zero_point(const char* op, const at::Tensor& zero_point, int64_t quant_min,
                              int64_t quant_max) {
  const auto t = zero_point.scalar_type();
  TORCH_CHECK(t != at::kBool && !at::isComplexType(t), op,
              ": zero_point must be an integer tensor (or a float tensor holding integers), got ",
              t);
  at::Tensor z = zero_point.detach().to(at::kDouble).contiguous();
  if (z.is_cpu()) {
    const double* p = z.const_data_ptr<double>();
    for (const auto i : c10::irange(z.numel())) {
      TORCH_CHECK(std::nearbyint(p[i]) == p[i], op,
                  ": zero_point must hold integers, got ", p[i], " at index ", i);
      TORCH_CHECK(p[i] >= double(quant_min) && p[i] <= double(quant_max), op, ": zero_point (",
                  p[i], " at index ", i, ") must lie in [quant_min, quant_max] = [", quant_min,
                  ", ", quant_max, "]");
    }
  } else {
    assert_on_device(at::logical_and(z.round().eq(z), at::logical_and(z.ge(double(quant_min)),
                                                                        z.le(double(quant_max)))),
                     "torchqat: zero_point must hold integers in [quant_min, quant_max]");
  }
  return z.to(at::kFloat);
}

at::Tensor rounded_zero_point(const char* op, const at::Tensor& zero_point, int64_t quant_min,
                              int64_t quant_max) {
  const auto t = zero_point.scalar_type();
  TORCH_CHECK(t != at::kBool && !at::isComplexType(t), op,
              ": zero_point must be a real or integer tensor, got ", t);
  at::Tensor z = zero_point.detach().to(at::kFloat);
  if (z.is_cpu()) {
    const at::Tensor zc = z.contiguous();
    const float* p = zc.const_data_ptr<float>();
    for (const auto i : c10::irange(zc.numel())) {
      TORCH_CHECK(std::isfinite(p[i]), op, ": zero_point must be finite, got ", p[i],
                  " at index ", i);
    }
  } else {
    assert_on_device(z.isfinite(), "torchqat: zero_point must be finite");
  }
  return z.round().clamp(double(quant_min), double(quant_max)).contiguous();
}

void check_grad_factor(const char* op, std::optional<double> grad_factor) {
  TORCH_CHECK(!grad_factor.has_value() || (std::isfinite(*grad_factor) && *grad_factor > 0.0), op,
              ": grad_factor must be finite and > 0, got ", grad_factor.value_or(0.0));
}

double resolve_grad_factor(const char* op, std::optional<double> grad_factor, int64_t numel,
                           int64_t num_scales, int64_t quant_min, int64_t quant_max) {
  check_grad_factor(op, grad_factor);
  if (grad_factor.has_value()) return *grad_factor;
  const int64_t per_scale = numel / std::max<int64_t>(num_scales, 1);
  const int64_t positive_max = quant_max > 0 ? quant_max : -quant_min;
  if (per_scale == 0) return 1.0;  // empty x: every sum is zero anyway
  return 1.0 / std::sqrt(double(per_scale) * double(positive_max));
}

kernels::Fp8Format parse_fp8_format(std::string_view fmt) {
  if (fmt == "e4m3" || fmt == "e4m3fn") return kernels::Fp8Format::kE4M3;
  if (fmt == "e5m2") return kernels::Fp8Format::kE5M2;
  TORCH_CHECK(false, "fake_quantize_fp8: fmt must be \"e4m3\" or \"e5m2\", got \"", fmt, "\"");
}

}  // namespace torchqat
