// Channels-last uint8 im2col (im2col.h).
#include "im2col.h"

#include <cstring>

#include "torchqat/kernels/tap_range.h"

namespace torchqat {

// The taps of a kernel row inside the input are neighbouring pixels when
// undilated: one copy of their channels (a 7x7 stem over 3 channels: 21 bytes
// per copy, not 3).
void im2col_rows(const uint8_t* in, uint8_t* out, int64_t begin, int64_t end, int64_t x_zero_point,
                 const ConvGeometry& g, const ConvTaps& taps, int64_t pixel_stride) {
  const auto stride = taps.stride, padding = taps.padding, dilation = taps.dilation;
  const size_t tap_bytes = size_t(g.c);
  const int64_t step = pixel_stride > 0 ? pixel_stride : g.c;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / (g.oh * g.ow), oy = (r / g.ow) % g.oh, ox = r % g.ow;
    const int64_t ix0 = ox * stride[1] - padding[1];
    const auto [first, last] = kernels::taps_inside(ix0, g.kw, dilation[1], g.w);
    for (int64_t ky = 0; ky < g.kh; ++ky, out += g.kw * g.c) {
      const int64_t iy = oy * stride[0] - padding[0] + ky * dilation[0];
      if (iy < 0 || iy >= g.h || first == last) {
        std::memset(out, int(x_zero_point), tap_bytes * size_t(g.kw));
        continue;
      }
      std::memset(out, int(x_zero_point), tap_bytes * size_t(first));
      const uint8_t* row = in + ((b * g.h + iy) * g.w + ix0) * step;
      if (dilation[1] == 1 && step == g.c) {
        std::memcpy(out + first * g.c, row + first * g.c, tap_bytes * size_t(last - first));
      } else {
        for (int64_t kx = first; kx < last; ++kx) {
          std::memcpy(out + kx * g.c, row + kx * dilation[1] * step, tap_bytes);
        }
      }
      std::memset(out + last * g.c, int(x_zero_point), tap_bytes * size_t(g.kw - last));
    }
  }
}

at::Tensor im2col(const at::Tensor& nhwc, int64_t x_zero_point, const ConvGeometry& g, const ConvTaps& taps) {
  const int64_t patch = g.kh * g.kw * g.c, rows = g.n * g.oh * g.ow;
  at::Tensor cols = at::empty({rows, patch}, nhwc.options());
  const uint8_t* in = nhwc.const_data_ptr<uint8_t>();
  uint8_t* c = cols.mutable_data_ptr<uint8_t>();
  at::parallel_for(0, rows, 16, [&](int64_t b, int64_t e) { im2col_rows(in, c + b * patch, b, e, x_zero_point, g, taps); });
  return cols;
}

}  // namespace torchqat
