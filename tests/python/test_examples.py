"""Smoke runs of the examples on a data subset: the pipeline works end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DATA.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fakequant_demo_trains_and_quantizes(tmp_path):
    out = tmp_path / "demo.json"
    cmd = [sys.executable, str(ROOT / "examples" / "fakequant_demo.py"), "--train-subset", "3000",
           "--epochs", "1", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=600)
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"float32", "float32 fine-tuned", "int8", "w4a8", "fp8 (e4m3)"}
    for name, r in results.items():
        assert r["acc"] > 0.5, f"{name}: accuracy {r['acc']} is not far above chance (0.1)"


REPORT_KEYS = {"fp32_acc", "ptq_acc", "qat_acc", "int8_acc", "fp32_size_bytes", "int8_size_bytes",
               "fp32_latency_ms_b1", "int8_latency_ms_b1", "qconfig", "seconds", "export_qat_agreement"}


@pytest.mark.skipif(not DATA.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_resnet_qat_example_end_to_end(tmp_path):
    """The whole path on a data subset: float32 -> PTQ -> QAT -> export ->
    save -> load -> ONNX Runtime, with the report written."""
    cmd = [sys.executable, str(ROOT / "examples" / "resnet_qat.py"), "--train-subset", "2560", "--qat-subset", "640",
           "--test-subset", "1000", "--out-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=900)
    r = json.loads((tmp_path / "resnet_qat.json").read_text())
    assert REPORT_KEYS | {"fp32_latency_ms_b32", "int8_latency_ms_b32", "onnx_agreement"} <= set(r)
    for key in ("fp32_acc", "qat_acc", "int8_acc"):
        assert r[key] > 0.5, f"{key} {r[key]} is not far above chance (0.1)"
    assert r["export_qat_agreement"] >= 0.98
    assert r["int8_size_bytes"] < 0.27 * r["fp32_size_bytes"]
    assert (tmp_path / "resnet_qat.png").stat().st_size > 0 and (tmp_path / "resnet_qat.md").exists()


def test_bert_qat_example_end_to_end(tmp_path):
    pytest.importorskip("transformers")
    cmd = [sys.executable, str(ROOT / "examples" / "bert_qat.py"), "--train-subset", "3000", "--test-subset", "600",
           "--epochs", "2", "--qat-epochs", "0.3", "--out-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=900)
    r = json.loads((tmp_path / "bert_qat.json").read_text())
    assert REPORT_KEYS | {"fp32_latency_ms_b16", "int8_latency_ms_b16"} <= set(r)
    chance = 1 / len(r["labels"])
    for key in ("fp32_acc", "qat_acc", "int8_acc"):
        assert r[key] > 3 * chance, f"{key} {r[key]} is not far above chance ({chance:.3f})"
    assert r["export_qat_agreement"] >= 0.97
