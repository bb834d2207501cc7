#include "torchqat/qat/modules.h"

#include <torch/torch.h>

#include "torchqat/qat/export.h"

namespace torchqat {
namespace {

std::vector<int64_t> weight_stat_shape(const QuantSpec& spec, const torch::Tensor& w,
                                       const std::string& name) {
  if (spec.granularity == Granularity::kPerTensor) return {1};
  if (spec.granularity == Granularity::kPerChannel) return {w.size(0)};
  const int64_t row = w.numel() / w.size(0);
  TORCH_CHECK(row % spec.group_size == 0, "torchqat: layer '", name, "': per-group size ",
              spec.group_size, " does not divide its weight rows of ", row,
              " elements; choose a group size that divides it or per-channel weights");
  return {w.size(0), row / spec.group_size};
}

}  // namespace

torch::Tensor group_rows(const torch::Tensor& w) {
  return w.dim() == 2 ? w : w.movedim(1, -1).reshape({w.size(0), -1});
}

torch::Tensor ungroup_rows(const torch::Tensor& rows, c10::IntArrayRef sizes) {
  if (sizes.size() == 2) return rows.reshape(sizes);
  std::vector<int64_t> tap_major{sizes[0]};
  tap_major.insert(tap_major.end(), sizes.begin() + 2, sizes.end());
  tap_major.push_back(sizes[1]);
  return rows.reshape(tap_major).movedim(-1, 1);
}

void QuantWeighted::setup(torch::nn::Module& self, const torch::Tensor& weight,
                          const LayerSpecs& specs) {
  relu = specs.relu;
  layer_name = specs.name;
  if (specs.activation) {
    TORCH_CHECK(specs.activation->granularity == Granularity::kPerTensor, "torchqat: layer '",
                specs.name, "': activations are quantized per tensor");
    input_quantizer = self.register_module(
        "input_quantizer", Quantizer(*specs.activation, std::vector<int64_t>{1}, specs.name + ".input"));
    input_quantizer->to(weight.device());
  }
  if (specs.weight) {
    weight_quantizer = self.register_module(
        "weight_quantizer",
        Quantizer(*specs.weight, weight_stat_shape(*specs.weight, weight, specs.name), specs.name + ".weight"));
    weight_quantizer->to(weight.device());
  }
}

torch::Tensor QuantWeighted::quantize_input(const torch::Tensor& x) {
  return input_quantizer ? input_quantizer->forward(x) : x;
}

torch::Tensor QuantWeighted::quantize_weight(const torch::Tensor& w) {
  if (!weight_quantizer) return w;
  if (weight_quantizer->spec().granularity == Granularity::kPerGroup) {
    return ungroup_rows(weight_quantizer->forward(group_rows(w)), w.sizes());
  }
  return weight_quantizer->forward(w);
}

torch::Tensor QuantWeighted::activate(const torch::Tensor& y) const {
  return relu ? torch::relu(y) : y;
}

QuantLinearImpl::QuantLinearImpl(const torch::nn::Linear& linear, const LayerSpecs& specs) {
  weight = register_parameter("weight", linear->weight);
  if (linear->bias.defined()) bias = register_parameter("bias", linear->bias);
  setup(*this, weight, specs);
}

torch::Tensor QuantLinearImpl::forward(const torch::Tensor& x) {
  if (lowered) return lowered->forward(x);
  return activate(torch::nn::functional::linear(quantize_input(x), quantize_weight(weight), bias));
}

QuantConv2dImpl::QuantConv2dImpl(const torch::nn::Conv2d& conv, const LayerSpecs& specs)
    : options(conv->options) {
  TORCH_CHECK(std::holds_alternative<torch::enumtype::kZeros>(options.padding_mode()),
              "torchqat: layer '", specs.name, "': only zero padding is supported");
  weight = register_parameter("weight", conv->weight);
  if (conv->bias.defined()) bias = register_parameter("bias", conv->bias);
  setup(*this, weight, specs);
}

torch::Tensor QuantConv2dImpl::convolve(const torch::Tensor& x, const torch::Tensor& w,
                                        const torch::Tensor& b) const {
  const auto& pad = options.padding();
  TORCH_CHECK(std::holds_alternative<torch::ExpandingArray<2>>(pad), "torchqat: layer '", layer_name,
              "': 'same'/'valid' padding strings are not supported; give explicit padding");
  return torch::conv2d(x, w, b, options.stride(), std::get<torch::ExpandingArray<2>>(pad),
                       options.dilation(), options.groups());
}

torch::Tensor QuantConv2dImpl::forward(const torch::Tensor& x) {
  if (lowered) return lowered->forward(x);
  return activate(convolve(quantize_input(x), quantize_weight(weight), bias));
}

QuantConvBn2dImpl::QuantConvBn2dImpl(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn_,
                                     const LayerSpecs& specs)
    : QuantConv2dImpl(conv, specs) {
  TORCH_CHECK(bn_->options.num_features() == options.out_channels(), "torchqat: layer '", specs.name,
              "': BatchNorm2d has ", bn_->options.num_features(), " features, the conv ",
              options.out_channels(), " output channels");
  TORCH_CHECK(bn_->options.track_running_stats() && bn_->options.affine(), "torchqat: layer '",
              specs.name, "': Conv-BN folding needs an affine BatchNorm2d with running statistics");
  bn = register_module("bn", bn_);
  bn_frozen_ = register_buffer("bn_frozen", torch::tensor(false));
}

torch::Tensor QuantConvBn2dImpl::bn_scale() const {
  return bn->weight * torch::rsqrt(bn->running_var + bn->options.eps());
}

torch::Tensor QuantConvBn2dImpl::folded_bias() const {
  const auto b = bias.defined() ? bias : torch::zeros_like(bn->running_mean);
  return (b - bn->running_mean) * bn_scale() + bn->bias;
}

torch::Tensor QuantConvBn2dImpl::forward(const torch::Tensor& x) {
  if (lowered) return lowered->forward(x);
  const auto scale = bn_scale();
  const auto w = quantize_weight(weight * scale.reshape({-1, 1, 1, 1}));
  auto y = convolve(quantize_input(x), w, {});
  if (!is_training() || bn_frozen()) return activate(y + folded_bias().reshape({1, -1, 1, 1}));
  // Undo the running-statistics scale so BatchNorm normalises this batch.
  y = y / scale.reshape({1, -1, 1, 1});
  if (bias.defined()) y = y + bias.reshape({1, -1, 1, 1});
  return activate(bn->forward(y));
}

}  // namespace torchqat
