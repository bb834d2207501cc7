// torchqat's C++ QAT API: QuantSpec / QConfig, Quantizer, the QAT layers,
// prepare_qat and export_model for LibTorch models.
#pragma once

#include "torchqat/qat/export.h"
#include "torchqat/qat/modules.h"
#include "torchqat/qat/prepare.h"
#include "torchqat/qat/quantizer.h"
#include "torchqat/qat/spec.h"
