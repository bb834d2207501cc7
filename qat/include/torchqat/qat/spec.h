// What to quantize and how, for the C++ QAT API: the same QuantSpec and
// QConfig presets as torchqat.QuantSpec / torchqat.QConfig in Python.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace torchqat {

enum class Granularity { kPerTensor, kPerChannel, kPerGroup };
enum class Estimator { kSte, kLsq, kLsqPlus };
// kCurrent: the range of the tensor at hand (weights); kMinMax: running;
// kMovingAverage: averaging_constant.
enum class ObserverKind { kCurrent, kMinMax, kMovingAverage };

struct QuantSpec {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = true;
  bool narrow_range = false;
  Granularity granularity = Granularity::kPerTensor;
  int64_t group_size = 0;  // > 0 exactly for kPerGroup
  Estimator estimator = Estimator::kSte;
  ObserverKind observer = ObserverKind::kMovingAverage;
  double averaging_constant = 0.01;

  // Throws c10::Error naming the offending field and what is allowed.
  void validate() const;
  int64_t quant_min() const;
  int64_t quant_max() const;
  std::string describe() const;  // e.g. "int8 per_channel sym ste"
};

struct QConfig {
  std::optional<QuantSpec> weight;
  std::optional<QuantSpec> activation;
  // The first and last quantized layers get at least this many bits.
  std::optional<int> first_last_bits;

  static QConfig int8();
  static QConfig w4a8(int64_t group_size = 32);
  static QConfig w4a4_lsq();
};

}  // namespace torchqat
