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
