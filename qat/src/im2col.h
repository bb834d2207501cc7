// Channels-last uint8 im2col for the conv ops that run a GEMM over patch
// rows (conv2d_int8, conv2d_w4a8). A patch row holds the taps in (ky, kx, c)
// order, the row order of weight.permute(0, 2, 3, 1).flatten(1).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "int8_op_checks.h"

namespace torchqat {

struct ConvTaps {
  c10::IntArrayRef stride, padding, dilation;
};

// Patch rows [begin, end) of the channels-last input `in` into `out`; taps in
// the padding take the input zero point (it stands for a real 0). A pixel's
// g.c channels are read `pixel_stride` bytes after the previous pixel's (more
// than g.c for one group's channels of a grouped conv's input; 0: g.c).
void im2col_rows(const uint8_t* in, uint8_t* out, int64_t begin, int64_t end, int64_t x_zero_point,
                 const ConvGeometry& g, const ConvTaps& taps, int64_t pixel_stride = 0);

// The whole [N * OH * OW, kh * kw * C] patch matrix, built over threads.
at::Tensor im2col(const at::Tensor& nhwc, int64_t x_zero_point, const ConvGeometry& g, const ConvTaps& taps);

// Whether the channels-last input is already the patch matrix (a 1x1,
// stride-1, unpadded conv).
inline bool is_pointwise(const ConvGeometry& g, const ConvTaps& taps) {
  return g.kh == 1 && g.kw == 1 && taps.stride[0] == 1 && taps.stride[1] == 1 && taps.padding[0] == 0 &&
         taps.padding[1] == 0;
}

// Patch rows in tiles: each task im2cols `tile` rows at a time into its own
// buffer (small enough to stay in cache) and calls gemm(patches, first_row,
// n_rows) on them; a pointwise conv's tiles are rows of the input itself.
template <class Gemm>
void for_each_patch_tile(const uint8_t* in, int64_t x_zero_point, const ConvGeometry& g, const ConvTaps& taps,
                         int64_t tile, const Gemm& gemm) {
  const int64_t patch = g.kh * g.kw * g.c, rows = g.n * g.oh * g.ow;
  const bool pointwise = is_pointwise(g, taps);
  at::parallel_for(0, rows, tile, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> buffer(pointwise ? 0 : size_t(tile * patch));
    for (int64_t t = begin; t < end; t += tile) {
      const int64_t n_rows = std::min(tile, end - t);
      if (pointwise) {
        gemm(in + t * patch, t, n_rows);
        continue;
      }
      im2col_rows(in, buffer.data(), t, t + n_rows, x_zero_point, g, taps);
      gemm(buffer.data(), t, n_rows);
    }
  });
}

}  // namespace torchqat
