#include "torchqat/qat/quantizer.h"

#include <torch/torch.h>

#include "fakequant/ops.h"

namespace torchqat {
namespace {

constexpr float kEps = 1.1920928955078125e-07f;  // float32 epsilon: the smallest scale

bool learned(const QuantSpec& s) { return s.estimator != Estimator::kSte; }

}  // namespace

QuantizerImpl::QuantizerImpl(QuantSpec spec, std::vector<int64_t> stat_shape, std::string name)
    : spec_(spec), name_(std::move(name)), stat_shape_(std::move(stat_shape)) {
  spec_.validate();
  if (spec_.granularity == Granularity::kPerChannel) axis_ = 0;
  if (spec_.granularity == Granularity::kPerGroup) group_size_ = spec_.group_size;
  min_val_ = register_buffer("min_val", torch::full(stat_shape_, INFINITY));
  max_val_ = register_buffer("max_val", torch::full(stat_shape_, -INFINITY));
  const auto flag = [](bool v) { return torch::tensor(v); };
  fake_quant_ = register_buffer("fake_quant_enabled", flag(true));
  observer_ = register_buffer("observer_enabled", flag(true));
  observed_ = register_buffer("observed", flag(false));
  initialised_ = register_buffer("initialised", flag(false));
  if (learned(spec_)) {
    scale_ = register_parameter("scale", torch::ones(stat_shape_));
    zero_point_ = register_parameter("zero_point", torch::zeros(stat_shape_),
                                     /*requires_grad=*/spec_.estimator == Estimator::kLsqPlus);
  }
}

bool QuantizerImpl::fake_quant_enabled() const { return flag(fake_quant_); }
bool QuantizerImpl::observer_enabled() const { return flag(observer_); }
void QuantizerImpl::enable_fake_quant(bool on) { fake_quant_.fill_(on); }
void QuantizerImpl::enable_observer(bool on) { observer_.fill_(on); }

void QuantizerImpl::freeze() {
  enable_observer(false);
  if (learned(spec_)) {
    scale_.set_requires_grad(false);
    zero_point_.set_requires_grad(false);
  }
}

void QuantizerImpl::require_observed() const {
  TORCH_CHECK(flag(observed_), "torchqat: quantizer '", name_,
              "' has never seen data, so it has no range: run data through the model with its "
              "observer on first");
}

void QuantizerImpl::observe(const torch::Tensor& x) {
  if (x.numel() == 0) return;
  torch::NoGradGuard no_grad;
  auto [lo, hi, nonfinite] = ops::observe_minmax(x.detach(), axis_, group_size_);
  lo = lo.reshape(stat_shape_);
  hi = hi.reshape(stat_shape_);
  if (spec_.observer == ObserverKind::kCurrent || !flag(observed_)) {
    min_val_.copy_(lo);
    max_val_.copy_(hi);
  } else if (spec_.observer == ObserverKind::kMinMax) {
    min_val_.copy_(torch::minimum(min_val_, lo));
    max_val_.copy_(torch::maximum(max_val_, hi));
  } else {
    const double c = spec_.averaging_constant;
    const auto ok = lo <= hi;
    min_val_.copy_(torch::where(ok, min_val_ + c * (lo - min_val_), min_val_));
    max_val_.copy_(torch::where(ok, max_val_ + c * (hi - max_val_), max_val_));
  }
  observed_.fill_(true);
}

void QuantizerImpl::initialise_learned() {
  require_observed();
  torch::NoGradGuard no_grad;
  if (spec_.estimator == Estimator::kLsqPlus) {
    auto [scale, zp] = ops::choose_qparams(min_val_, max_val_, spec_.quant_min(), spec_.quant_max(),
                                           /*symmetric=*/false);
    scale_.copy_(scale.clamp_min(kEps));
    zero_point_.copy_(zp.to(torch::kFloat));
  } else {  // zero point 0: the largest magnitude maps to quant_max
    scale_.copy_((torch::maximum(-min_val_, max_val_).clamp_min(0) / double(spec_.quant_max()))
                     .clamp_min(kEps));
  }
  initialised_.fill_(true);
}

torch::Tensor QuantizerImpl::forward(const torch::Tensor& x) {
  const int64_t qmin = spec_.quant_min(), qmax = spec_.quant_max();
  const bool fake_quant = fake_quant_enabled(), observing = observer_enabled();
  if (learned(spec_)) {
    if (!flag(initialised_)) {
      if (observing || !flag(observed_)) observe(x);
      if (!fake_quant) return x;
      initialise_learned();
    } else if (!fake_quant) {
      return x;
    }
    {
      torch::NoGradGuard no_grad;
      scale_.clamp_(kEps);  // a learned step must stay positive
    }
    return ops::lsq_fake_quantize(x, scale_, zero_point_, qmin, qmax, std::nullopt, axis_,
                                  group_size_);
  }
  if (spec_.observer == ObserverKind::kCurrent) {
    if (observing) observe(x);
    if (!fake_quant) return x;
    auto [scale, zp] = qparams();
    return ops::fake_quantize(x, scale, zp, qmin, qmax, axis_, group_size_);
  }
  // Activations: the fused observe + fake-quantize op, no host round trip.
  if (observing && x.numel() > 0) {
    observed_.fill_(true);
  } else if (fake_quant) {
    require_observed();
  }
  const std::optional<double> c = spec_.observer == ObserverKind::kMovingAverage
                                      ? std::optional<double>(spec_.averaging_constant)
                                      : std::nullopt;
  return ops::observe_fake_quantize(x, min_val_, max_val_, qmin, qmax, spec_.symmetric, c, observing,
                                    fake_quant, axis_, group_size_);
}

std::tuple<torch::Tensor, torch::Tensor> QuantizerImpl::qparams() const {
  require_observed();
  if (learned(spec_) && flag(initialised_)) {
    return {scale_.detach().clamp_min(kEps),
            zero_point_.detach().round().clamp(spec_.quant_min(), spec_.quant_max()).to(torch::kInt)};
  }
  return ops::choose_qparams(min_val_, max_val_, spec_.quant_min(), spec_.quant_max(), spec_.symmetric);
}

}  // namespace torchqat
