// Quantizer: observer + fake quantizer (+ learned LSQ / LSQ+ qparams) for one
// tensor, as torchqat.nn.Quantizer in Python.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <tuple>
#include <vector>

#include "torchqat/qat/spec.h"

namespace torchqat {

class QuantizerImpl : public torch::nn::Module {
 public:
  // stat_shape: {1} per tensor, {channels} per channel (axis 0),
  // {rows, groups} per group along the last dimension of a 2-D tensor.
  QuantizerImpl(QuantSpec spec, std::vector<int64_t> stat_shape, std::string name);

  torch::Tensor forward(const torch::Tensor& x);

  // The (scale, zero_point) applied now; throws if the quantizer never saw data.
  std::tuple<torch::Tensor, torch::Tensor> qparams() const;

  const QuantSpec& spec() const { return spec_; }
  const std::string& name() const { return name_; }

  // Switches, saved with the module (as buffers).
  bool fake_quant_enabled() const;
  bool observer_enabled() const;
  void enable_fake_quant(bool on);
  void enable_observer(bool on);
  void freeze();  // observer off, learned qparams no longer trained

 private:
  void observe(const torch::Tensor& x);
  void require_observed() const;
  void initialise_learned();
  bool flag(const torch::Tensor& t) const { return t.item<bool>(); }

  QuantSpec spec_;
  std::string name_;
  std::vector<int64_t> stat_shape_;
  std::optional<int64_t> axis_, group_size_;
  torch::Tensor min_val_, max_val_;
  torch::Tensor scale_, zero_point_;  // LSQ / LSQ+
  // 0/1 flags as bool buffers, so torch::save / torch::load keep them.
  torch::Tensor fake_quant_, observer_, observed_, initialised_;
};
TORCH_MODULE(Quantizer);

}  // namespace torchqat
