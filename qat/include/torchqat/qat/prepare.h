// prepare_qat and the model-level switches for LibTorch models.
//
// prepare_qat rewrites a torch::nn::Sequential into a new one sharing its
// parameters: Conv2d -> BatchNorm2d (-> ReLU) becomes QuantConvBn2d, Conv2d / Linear
// (-> ReLU) become QuantConv2d / QuantLinear; other modules are kept. Layers
// whose weight rows a per-group spec's groups do not divide, and grouped convs, get per-channel
// weights of at least 8 bits (as in Python, where the report lists them). A custom
// module cannot be rewritten from outside in C++ (its members hold concrete
// layer types), so custom modules use the torchqat layers directly or keep
// their layers in Sequentials that they pass through prepare_qat.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <string>

#include "torchqat/qat/spec.h"

namespace torchqat {

torch::nn::Sequential prepare_qat(const torch::nn::Sequential& model, const QConfig& qconfig);

// Switches over every quantizer / Conv-BN layer in a module tree.
void enable_fake_quant(torch::nn::Module& model, bool on = true);
void enable_observer(torch::nn::Module& model, bool on = true);
void freeze_bn_stats(torch::nn::Module& model, bool frozen = true);
void freeze(torch::nn::Module& model);

// A table of the quantized layers: name, kind, weight and input specs, scales.
std::string summary(torch::nn::Module& model);

}  // namespace torchqat
