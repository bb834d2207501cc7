// QAT layers for LibTorch: Linear, Conv2d and Conv2d + BatchNorm2d (+ ReLU)
// with fake-quantized input and weight, as torchqat.nn in Python. Each layer
// quantizes its own input; `relu` fuses a ReLU on its output.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <string>

#include "torchqat/qat/quantizer.h"
#include "torchqat/qat/spec.h"

namespace torchqat {

class LoweredLayer;  // export.h

struct LayerSpecs {
  std::optional<QuantSpec> weight;
  std::optional<QuantSpec> activation;
  bool relu = false;
  std::string name;
};

// A weight as per-group quantizers see it: [out, -1] rows, a conv weight
// [out, in, kh, kw] read with the input channel fastest ([out, kh, kw, in]),
// so that groups run along input channels within a kernel tap, as in the
// channels-last im2col row of the integer kernels. ungroup_rows inverts it.
torch::Tensor group_rows(const torch::Tensor& w);
torch::Tensor ungroup_rows(const torch::Tensor& rows, c10::IntArrayRef sizes);

// The input and weight quantizers of a layer with a weight.
class QuantWeighted {
 public:
  Quantizer input_quantizer{nullptr};
  Quantizer weight_quantizer{nullptr};
  bool relu = false;
  std::string layer_name;
  // Set by export_model: the integer kernel that forward runs from then on.
  std::shared_ptr<const LoweredLayer> lowered;

 protected:
  void setup(torch::nn::Module& self, const torch::Tensor& weight, const LayerSpecs& specs);
  torch::Tensor quantize_input(const torch::Tensor& x);
  torch::Tensor quantize_weight(const torch::Tensor& w);
  torch::Tensor activate(const torch::Tensor& y) const;
};

class QuantLinearImpl : public torch::nn::Module, public QuantWeighted {
 public:
  // Shares the float layer's parameters (no copy).
  QuantLinearImpl(const torch::nn::Linear& linear, const LayerSpecs& specs);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;  // bias undefined when the layer has none
};
TORCH_MODULE(QuantLinear);

class QuantConv2dImpl : public torch::nn::Module, public QuantWeighted {
 public:
  QuantConv2dImpl(const torch::nn::Conv2d& conv, const LayerSpecs& specs);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;
  torch::nn::detail::ConvNdOptions<2> options;

 protected:
  torch::Tensor convolve(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) const;
};
TORCH_MODULE(QuantConv2d);

// Conv2d + BatchNorm2d folded for QAT (Jacob et al. 2018): the weight scaled
// by gamma / sqrt(running_var + eps) is what the weight quantizer sees; in
// training BatchNorm normalises with batch statistics, in eval (or once
// frozen) the layer is exactly the folded conv.
class QuantConvBn2dImpl : public QuantConv2dImpl {
 public:
  QuantConvBn2dImpl(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn,
                    const LayerSpecs& specs);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor bn_scale() const;     // gamma / sqrt(running_var + eps)
  torch::Tensor folded_bias() const;  // the deployed conv's bias
  void freeze_bn_stats(bool frozen = true) { bn_frozen_.fill_(frozen); }
  bool bn_frozen() const { return bn_frozen_.item<bool>(); }

  torch::nn::BatchNorm2d bn{nullptr};

 private:
  torch::Tensor bn_frozen_;
};
TORCH_MODULE(QuantConvBn2d);

}  // namespace torchqat
