// INT8 depthwise Conv2d: weight packing and the scalar reference.
#include <algorithm>

#include "torchqat/kernels/depthwise_int8.h"

namespace torchqat::kernels {

void pack_depthwise_int8_weights(const int8_t* w, int64_t channels, int64_t taps, int8_t* data,
                                 int32_t* weight_sums) {
  const int64_t pairs = depthwise_tap_pairs(taps);
  std::fill(data, data + depthwise_packed_bytes(channels, taps), int8_t{0});
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t block = c / kDepthwiseBlock, lane = c % kDepthwiseBlock;
    int32_t sum = 0;
    for (int64_t t = 0; t < taps; ++t) {
      sum += w[c * taps + t];
      data[((block * pairs + t / 2) * kDepthwiseBlock + lane) * 2 + t % 2] = w[c * taps + t];
    }
    weight_sums[c] = sum;
  }
}

void depthwise_int8_reference(const DepthwiseInt8Args& args, int64_t row_begin, int64_t row_end) {
  const int64_t pairs = depthwise_tap_pairs(args.taps()), zero = args.epilogue.a_zero;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / args.out_h, oy = row % args.out_h;
    for (int64_t ox = 0; ox < args.out_w; ++ox) {
      for (int64_t c = 0; c < args.channels; ++c) {
        const int64_t block = c / kDepthwiseBlock, lane = c % kDepthwiseBlock;
        int64_t acc = 0;
        for (int64_t ky = 0; ky < args.kernel_h; ++ky) {
          const int64_t iy = oy * args.stride_h - args.pad_h + ky * args.dilation_h;
          for (int64_t kx = 0; kx < args.kernel_w; ++kx) {
            const int64_t ix = ox * args.stride_w - args.pad_w + kx * args.dilation_w;
            if (iy < 0 || iy >= args.height || ix < 0 || ix >= args.width) continue;  // (x_zero - x_zero) * w
            const int64_t t = ky * args.kernel_w + kx;
            const int64_t w = args.weights[((block * pairs + t / 2) * kDepthwiseBlock + lane) * 2 + t % 2];
            acc += (int64_t(args.x[((b * args.height + iy) * args.width + ix) * args.channels + c]) - zero) * w;
          }
        }
        gemm_epilogue(args.epilogue, row * args.out_w + ox, c, int32_t(acc));
      }
    }
  }
}

}  // namespace torchqat::kernels
