// The schema of every torchqat op: the one place that calls m.def.
//
// Public ops (fake_quantize, fake_quantize_fp8) are differentiable; each is
// an autograd Function over a forward op that also returns the 1-bit STE
// mask and a backward op (ste_backward), so torch.compile and torch.export
// see plain ops with their own CPU / CUDA / Meta kernels.
#include <torch/library.h>

TORCH_LIBRARY(torchqat, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  m.def(
      "fake_quantize(Tensor x, Tensor scale, Tensor zero_point, int quant_min, int quant_max, "
      "int? axis=None, int? group_size=None) -> Tensor",
      tags);
  m.def(
      "fake_quantize_forward(Tensor x, Tensor scale, Tensor zero_point, int quant_min, "
      "int quant_max, int? axis=None, int? group_size=None) -> (Tensor output, Tensor mask)",
      tags);
  m.def(
      "fake_quantize_fp8(Tensor x, Tensor scale, str fmt=\"e4m3\", int? axis=None, "
      "int? group_size=None) -> Tensor",
      tags);
  m.def(
      "fake_quantize_fp8_forward(Tensor x, Tensor scale, str fmt=\"e4m3\", int? axis=None, "
      "int? group_size=None) -> (Tensor output, Tensor mask)",
      tags);
  m.def("ste_backward(Tensor grad, Tensor mask) -> Tensor", tags);
}
