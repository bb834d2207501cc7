// export_model: a LibTorch QAT model switched to integer inference, the C++
// counterpart of torchqat.export (`export` is a C++ keyword).
//
// A C++ model's forward() calls its layers through their concrete types, so
// layers cannot be swapped from outside (see prepare.h); instead each QAT
// layer is lowered in place: it keeps its place in the model and, from then
// on, its forward runs the integer kernel with constants frozen at export
// (quantized, packed weights with BatchNorm folded in; the input grid; the
// per-channel output multiplier). Layers the integer kernels cannot compute
// exactly keep their fake-quantized float forward with observers off.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace torchqat {

// What an exported QAT layer runs instead of fake quantization.
class LoweredLayer {
 public:
  virtual ~LoweredLayer() = default;
  virtual torch::Tensor forward(const torch::Tensor& x) const = 0;
};

struct ExportedLayer {
  std::string name;    // the layer's path in the model
  std::string kernel;  // what it runs, e.g. "int8 GEMM"
};

// Lowers every QAT layer of `model` (CPU only; eval mode afterwards). Throws,
// naming the layer, when a quantizer never saw data or a layer was exported
// already. Returns what each layer runs, in module order.
std::vector<ExportedLayer> export_model(torch::nn::Module& model);

// "name: kernel" per line.
std::string to_string(const std::vector<ExportedLayer>& layers);

}  // namespace torchqat
