// torchqat's C++ QAT API: QuantSpec / QConfig, Quantizer, the QAT layers and
// prepare_qat for LibTorch models.
#pragma once

#include "torchqat/qat/modules.h"
#include "torchqat/qat/prepare.h"
#include "torchqat/qat/quantizer.h"
#include "torchqat/qat/spec.h"
