// The header every packed-weight tensor of the integer ops starts with: the
// magic 'q' plus a byte naming the format, the packing version, a reserved
// byte, and in_features as 32 bits little-endian.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>

namespace torchqat {

inline constexpr int64_t kPackedHeader = 8;

struct PackedFormat {
  uint8_t tag;          // second magic byte: 'Q' int8, '4' int4
  uint8_t version;      // bumped whenever the kernels' layout changes
  const char* packer;   // the op that packs this format, for messages
};

inline void write_packed_header(uint8_t* h, const PackedFormat& f, int64_t in_features) {
  const uint8_t header[kPackedHeader] = {'q', f.tag, f.version, 0, uint8_t(in_features), uint8_t(in_features >> 8),
                                         uint8_t(in_features >> 16), uint8_t(in_features >> 24)};
  for (int64_t i = 0; i < kPackedHeader; ++i) h[i] = header[i];
}

// Checks the magic and the version (errors name `op`); returns in_features.
inline int64_t read_packed_header(const char* op, const uint8_t* h, const PackedFormat& f) {
  TORCH_CHECK(h[0] == 'q' && h[1] == f.tag, op, ": packed does not come from ", f.packer, " (bad header)");
  TORCH_CHECK(h[2] == f.version, op, ": packed weights are of packing version ", int(h[2]), "; this build reads ",
              int(f.version), ": pack the weights again with ", f.packer);
  return int64_t(h[4]) | (int64_t(h[5]) << 8) | (int64_t(h[6]) << 16) | (int64_t(h[7]) << 24);
}

}  // namespace torchqat
