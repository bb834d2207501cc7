"""The quantization half of the end-to-end examples (ResNet and BERT alike):
post-training quantization for comparison, QAT from the calibrated ranges,
export, save, and the reloaded file evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch import nn

import torchqat

from .training import accuracy, agreement


@dataclass
class Deployed:
    qat: nn.Module           # the frozen QAT model (eval)
    deployed: nn.Module      # the exported model reloaded from its file
    int8_logits: torch.Tensor


def quantize_and_deploy(model: nn.Module, qconfig: torchqat.QConfig, calib: List, fine_tune: Callable[[nn.Module], None],
                        evaluate: Callable[[nn.Module, str], torch.Tensor], labels: torch.Tensor, example, tmp: Path,
                        name: str, results: Dict[str, object]) -> Deployed:
    """Fills results' fp32_size_bytes, ptq_acc, qat_acc, int8_size_bytes,
    int8_acc and export_qat_agreement. ``fine_tune(qat)`` trains the prepared
    model; ``evaluate(model, description)`` gives test logits; ``example``
    drives the trace of the saved program."""
    torch.save(model.state_dict(), tmp / "fp32.pt")
    results["fp32_size_bytes"] = (tmp / "fp32.pt").stat().st_size

    ptq = torchqat.prepare_qat(model, qconfig)
    torchqat.calibrate(ptq, calib, progress=True)
    results["ptq_acc"] = accuracy(evaluate(torchqat.export(torchqat.freeze(ptq)), "PTQ eval"), labels)
    print(f"post-training quantization accuracy {results['ptq_acc']:.4f}")

    qat = torchqat.prepare_qat(model, qconfig)
    torchqat.calibrate(qat, calib)  # QAT starts from the calibrated ranges
    fine_tune(qat)
    qat.eval()
    torchqat.freeze(qat)
    qat_logits = evaluate(qat, "QAT eval")
    results["qat_acc"] = accuracy(qat_logits, labels)
    print(f"QAT accuracy {results['qat_acc']:.4f}")

    exported = torchqat.export(qat)
    print(exported.torchqat_export_report)
    path = tmp / f"{name}.tqat"
    results["int8_size_bytes"] = torchqat.save(exported, path, example)
    deployed = torchqat.load(path)  # the reloaded file is what is evaluated and timed
    int8_logits = evaluate(deployed, "INT8 eval")
    results["int8_acc"] = accuracy(int8_logits, labels)
    results["export_qat_agreement"] = agreement(int8_logits, qat_logits)
    print(f"exported INT8 accuracy {results['int8_acc']:.4f} "
          f"(top-1 agreement with QAT {results['export_qat_agreement']:.4f})")
    return Deployed(qat, deployed, int8_logits)
