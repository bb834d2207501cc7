// The deployable model file of torchqat (written by torchqat.save in Python),
// read without Python.
//
// Layout (integers little-endian):
//   0   "TORCHQAT"                 magic, 8 bytes
//   8   uint32 format version      kArtifactVersion
//   12  uint32 CRC-32 (zlib) of every byte from offset 16 to the end
//   16  uint64 metadata length M, then M bytes of JSON (versions, inputs)
//   24+M uint64 payload length P, then P bytes: the TorchScript archive of the
//        exported model, whose torchqat ops carry the packed integer weights
//
// A file that is truncated, longer than its lengths say, of another format
// version, or whose checksum does not match is refused with an error naming
// the problem (c10::Error), before anything of it is deserialized.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <string>

namespace torchqat {

inline constexpr uint32_t kArtifactVersion = 1;

struct Artifact {
  std::string metadata;  // JSON
  std::string payload;   // TorchScript archive
};

// Writes the file through a temporary beside it, renamed over `path` once
// complete: a failed save never leaves a partial file where a good one was.
void write_artifact(const std::string& path, const Artifact& artifact);

// Reads and checks a file.
Artifact read_artifact(const std::string& path);

// read_artifact + torch::jit::load: the exported model, ready to run (eval).
torch::jit::Module load(const std::string& path);

}  // namespace torchqat
