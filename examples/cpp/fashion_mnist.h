// Fashion-MNIST for the C++ examples, read from the gzipped IDX files that
// Debian's dataset-fashion-mnist installs (nothing downloads).
#pragma once

#include <torch/torch.h>
#include <zlib.h>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

namespace fashion_mnist {

inline const std::string kDefaultDir = "/usr/share/datasets/fashion-mnist";
inline constexpr double kMean = 0.2860, kStd = 0.3530;  // of the training pixels in [0, 1]

// One gzipped IDX file (the format of the MNIST family) as a uint8 tensor,
// at most `limit` items.
inline torch::Tensor read_idx_gz(const std::string& path, int64_t limit) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path + " (install dataset-fashion-mnist or pass --data)");
  const auto read_u32 = [&] {
    std::array<unsigned char, 4> b{};
    if (gzread(f, b.data(), 4) != 4) throw std::runtime_error(path + ": truncated header");
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
  };
  const uint32_t magic = read_u32();
  const int dims = int(magic & 0xff);
  if ((magic >> 8) != 0x08 || dims < 1 || dims > 3) {
    gzclose(f);
    throw std::runtime_error(path + ": not an unsigned-byte IDX file");
  }
  std::vector<int64_t> shape;
  for (int d = 0; d < dims; ++d) shape.push_back(read_u32());
  shape[0] = std::min<int64_t>(shape[0], limit);
  auto t = torch::empty(shape, torch::kUInt8);
  const auto bytes = static_cast<unsigned>(t.numel());
  const int got = gzread(f, t.data_ptr<uint8_t>(), bytes);
  gzclose(f);
  if (got != int(bytes)) throw std::runtime_error(path + ": truncated data");
  return t;
}

struct Split {
  torch::Tensor images;  // [N, 1, 28, 28] float, normalized with kMean / kStd
  torch::Tensor labels;  // [N] int64
};

// `prefix` is "train" or "t10k".
inline Split load(const std::string& dir, const std::string& prefix, int64_t limit) {
  auto x = read_idx_gz(dir + "/" + prefix + "-images-idx3-ubyte.gz", limit).to(torch::kFloat) / 255.0;
  auto y = read_idx_gz(dir + "/" + prefix + "-labels-idx1-ubyte.gz", limit).to(torch::kLong);
  return {((x - kMean) / kStd).unsqueeze(1), y};
}

}  // namespace fashion_mnist
