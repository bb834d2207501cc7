#include "torchqat/qat/spec.h"

#include <c10/util/Exception.h>

#include "torchqat/kernels/quant_math.h"

namespace torchqat {

void QuantSpec::validate() const {
  TORCH_CHECK(bits >= 2 && bits <= 8, "QuantSpec: bits must be in [2, 8], got ", bits);
  TORCH_CHECK((granularity == Granularity::kPerGroup) == (group_size > 0),
              "QuantSpec: group_size must be > 0 exactly when granularity is per-group, got ",
              group_size);
  TORCH_CHECK(!(estimator == Estimator::kLsqPlus && symmetric),
              "QuantSpec: LSQ+ learns a zero point: it needs symmetric = false");
  TORCH_CHECK(averaging_constant > 0.0 && averaging_constant <= 1.0,
              "QuantSpec: averaging_constant must be in (0, 1], got ", averaging_constant);
}

int64_t QuantSpec::quant_min() const {
  return kernels::quant_range(bits, is_signed, narrow_range).qmin;
}

int64_t QuantSpec::quant_max() const {
  return kernels::quant_range(bits, is_signed, narrow_range).qmax;
}

std::string QuantSpec::describe() const {
  std::string gran = granularity == Granularity::kPerTensor    ? "per_tensor"
                     : granularity == Granularity::kPerChannel ? "per_channel"
                                                               : "per_group(" + std::to_string(group_size) + ")";
  const char* est = estimator == Estimator::kSte ? "ste" : estimator == Estimator::kLsq ? "lsq" : "lsq+";
  return (is_signed ? "int" : "uint") + std::to_string(bits) + " " + gran + " " +
         (symmetric ? "sym " : "asym ") + est;
}

namespace {

QuantSpec int8_weight() {
  QuantSpec s;
  s.narrow_range = true;
  s.granularity = Granularity::kPerChannel;
  s.observer = ObserverKind::kCurrent;
  return s;
}

QuantSpec uint8_activation() {
  QuantSpec s;
  s.is_signed = false;
  s.symmetric = false;
  return s;
}

}  // namespace

QConfig QConfig::int8() { return {int8_weight(), uint8_activation(), std::nullopt}; }

QConfig QConfig::w4a8(int64_t group_size) {
  QuantSpec w = int8_weight();
  w.bits = 4;
  w.narrow_range = false;
  w.granularity = Granularity::kPerGroup;
  w.group_size = group_size;
  return {w, uint8_activation(), 8};
}

QConfig QConfig::w4a4_lsq() {
  QuantSpec w = int8_weight();
  w.bits = 4;
  w.narrow_range = false;
  w.estimator = Estimator::kLsq;
  QuantSpec a = uint8_activation();
  a.bits = 4;
  a.estimator = Estimator::kLsqPlus;
  a.observer = ObserverKind::kMinMax;
  return {w, a, 8};
}

}  // namespace torchqat
