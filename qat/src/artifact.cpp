// The model file (deploy.h): writing, checking, loading.
#include <c10/util/Exception.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "torchqat/deploy.h"

namespace torchqat {
namespace {

constexpr char kMagic[8] = {'T', 'O', 'R', 'C', 'H', 'Q', 'A', 'T'};
constexpr size_t kFixedHeader = 16;  // magic, version, checksum

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
uint64_t get_le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(s[at + i])) << (8 * i);
  return v;
}

// zlib's crc32 takes 32-bit lengths: feed it in chunks.
uint32_t crc32_of(const std::string& s, size_t from) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t at = from; at < s.size();) {
    const size_t n = std::min<size_t>(s.size() - at, size_t(1) << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(s.data() + at), uInt(n));
    at += n;
  }
  return uint32_t(crc);
}

}  // namespace

void write_artifact(const std::string& path, const Artifact& artifact) {
  std::string body;  // everything the checksum covers
  put_u64(body, artifact.metadata.size());
  body += artifact.metadata;
  put_u64(body, artifact.payload.size());
  body += artifact.payload;
  std::string file(kMagic, sizeof(kMagic));
  put_u32(file, kArtifactVersion);
  put_u32(file, 0);
  file += body;
  const uint32_t crc = crc32_of(file, kFixedHeader);
  for (int i = 0; i < 4; ++i) file[12 + i] = char((crc >> (8 * i)) & 0xff);

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TORCH_CHECK(out.good(), "torchqat.save: cannot open '", tmp, "' for writing");
    out.write(file.data(), std::streamsize(file.size()));
    out.flush();
    TORCH_CHECK(out.good(), "torchqat.save: writing '", tmp, "' failed (disk full?)");
  }
  TORCH_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "torchqat.save: cannot move '", tmp, "' to '", path,
              "'");
}

Artifact read_artifact(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "torchqat.load: cannot open '", path, "'");
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string where = "torchqat.load: '" + path + "': ";
  TORCH_CHECK(file.size() >= kFixedHeader + 8, where, "truncated: ", file.size(),
              " bytes, fewer than a torchqat model file's header");
  TORCH_CHECK(file.compare(0, sizeof(kMagic), kMagic, sizeof(kMagic)) == 0, where,
              "not a torchqat model file (bad magic bytes)");
  const uint32_t version = uint32_t(get_le(file, 8, 4));
  TORCH_CHECK(version == kArtifactVersion, where, "written in model file format version ", version,
              "; this build of torchqat reads version ", kArtifactVersion, " (export and save the model again with "
              "this version)");
  // The lengths are checked before the checksum so that a cut-off file says
  // so; a corrupted length reads the same way.
  const uint64_t meta_len = get_le(file, kFixedHeader, 8);
  const uint64_t payload_at = kFixedHeader + 8 + meta_len;
  TORCH_CHECK(meta_len <= file.size() && payload_at + 8 <= file.size(), where,
              "truncated or corrupted: the metadata runs past the end of the ", file.size(), "-byte file");
  const uint64_t payload_len = get_le(file, payload_at, 8);
  const uint64_t expected = payload_at + 8 + payload_len;
  TORCH_CHECK(payload_len <= file.size() && expected == file.size(), where, "truncated or corrupted: the header says ",
              expected, " bytes, the file has ", file.size());
  const uint32_t stored = uint32_t(get_le(file, 12, 4));
  const uint32_t computed = crc32_of(file, kFixedHeader);
  TORCH_CHECK(stored == computed, where, "corrupted: checksum mismatch (stored CRC-32 ", stored, ", computed ",
              computed, ")");
  return {file.substr(kFixedHeader + 8, meta_len), file.substr(payload_at + 8, payload_len)};
}

torch::jit::Module load(const std::string& path) {
  const Artifact artifact = read_artifact(path);
  std::istringstream stream(artifact.payload);
  torch::jit::Module module = torch::jit::load(stream);
  module.eval();
  return module;
}

}  // namespace torchqat
