// The memory format an element-wise op over activations keeps: channels-last
// for a 4-D channels-last input (as the INT8 convs write), else contiguous.
#pragma once

#include <ATen/ATen.h>

namespace torchqat {

inline at::MemoryFormat format_of(const at::Tensor& x) {
  return x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous()
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

}  // namespace torchqat
