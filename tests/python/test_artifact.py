"""torchqat.save / load: one file, run in a fresh Python process and from C++
without Python, refused clearly when truncated, corrupted or of another
version."""

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import torchqat

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "build" / "dev" / "examples" / "cpp" / "deploy"
DATA = Path("/usr/share/datasets/fashion-mnist")


def _exported_cnn(seed=0):
    """A small Fashion-MNIST-shaped CNN, calibrated and exported (int8)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    qat = torchqat.prepare_qat(model, torchqat.QConfig.int8())
    torchqat.calibrate(qat, [torch.randn(16, 1, 28, 28) for _ in range(2)])
    return model, torchqat.export(qat)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("artifact") / "cnn.tqat"
    _, exported = _exported_cnn()
    x = torch.randn(4, 1, 28, 28)
    torchqat.save(exported, path, x)
    return path, exported


def test_load_gives_the_exported_outputs_at_other_batch_sizes(saved):
    path, exported = saved
    loaded = torchqat.load(path)
    for n in (1, 4, 9):
        x = torch.randn(n, 1, 28, 28)
        with torch.no_grad():
            assert torch.equal(loaded(x), exported(x))
    meta = torchqat.deploy.read_metadata(path)
    assert meta["format"] == "torchqat.model" and meta["inputs"][0]["shape"] == [4, 1, 28, 28]


def test_loads_in_a_fresh_process_without_the_training_code(saved, tmp_path):
    path, exported = saved
    x = torch.randn(5, 1, 28, 28)
    torch.save({"x": x, "y": exported(x)}, tmp_path / "io.pt")
    script = ("import sys, torch, torchqat\n"
              "m = torchqat.load(sys.argv[1]); d = torch.load(sys.argv[2])\n"
              "assert 'torchvision' not in sys.modules and 'transformers' not in sys.modules\n"
              "assert torch.equal(m(d['x']), d['y']), 'outputs differ'\n"
              "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "io.pt")], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _mangled(path: Path, tmp_path: Path, name: str, data: bytes) -> Path:
    bad = tmp_path / name
    bad.write_bytes(data)
    return bad


def test_mangled_files_are_refused_with_the_reason(saved, tmp_path):
    path, _ = saved
    good = path.read_bytes()
    cases = {
        "empty": (b"", "truncated"),
        "header only": (good[:20], "truncated"),
        "cut in the payload": (good[: len(good) // 2], "truncated or corrupted"),
        "cut by one byte": (good[:-1], "truncated or corrupted"),
        "trailing bytes": (good + b"\0\0", "truncated or corrupted"),
        "foreign file": (b"PK\x03\x04" + good[4:], "not a torchqat model file"),
    }
    # A flipped byte anywhere after the fixed header: metadata, payload start, middle, end.
    for where in (20, 40, len(good) // 3, len(good) // 2, len(good) - 1):
        flipped = bytearray(good)
        flipped[where] ^= 0x5A
        cases[f"flipped byte at {where}"] = (bytes(flipped), "checksum mismatch|truncated or corrupted")
    flipped_crc = bytearray(good)
    flipped_crc[13] ^= 0x01
    cases["flipped checksum"] = (bytes(flipped_crc), "checksum mismatch")
    newer = bytearray(good)
    newer[8:12] = struct.pack("<I", 7)
    cases["newer format version"] = (bytes(newer), "format version 7; this build of torchqat reads version 1")
    for name, (data, message) in cases.items():
        bad = _mangled(path, tmp_path, name.replace(" ", "_"), data)
        with pytest.raises(ValueError, match=message):
            torchqat.load(bad)
    with pytest.raises(ValueError, match="cannot open"):
        torchqat.load(tmp_path / "missing.tqat")


def test_a_checksummed_but_foreign_payload_is_refused(saved, tmp_path):
    """A file whose wrapper is intact but whose metadata is not a torchqat
    model (a checksum proves integrity, not provenance)."""
    bad = tmp_path / "foreign.tqat"
    torchqat._C.write_artifact(str(bad), '{"format": "something.else"}', b"not torchscript")
    with pytest.raises(ValueError, match="not a torchqat TorchScript model"):
        torchqat.load(bad)


def test_save_never_leaves_a_partial_file(saved, tmp_path):
    path, exported = saved
    target = tmp_path / "model.tqat"
    target.write_bytes(b"previous")
    with pytest.raises(TypeError):
        torchqat.save(exported, target, "not an input")
    assert target.read_bytes() == b"previous"
    with pytest.raises(TypeError, match="torchqat.export"):
        torchqat.save(nn.Linear(2, 2), target, torch.randn(1, 2))


def test_int8_file_is_at_most_27_percent_of_the_float_state_dict(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    qat = torchqat.prepare_qat(model, torchqat.QConfig.int8())
    torchqat.calibrate(qat, [torch.randn(4, 3, 32, 32)])
    torch.save(model.state_dict(), tmp_path / "fp32.pt")
    size = torchqat.save(torchqat.export(qat), tmp_path / "int8.tqat", torch.randn(1, 3, 32, 32))
    ratio = size / os.path.getsize(tmp_path / "fp32.pt")
    assert ratio <= 0.27, f"int8 file is {ratio:.3f} of the float32 state_dict"


@pytest.mark.parametrize("group_size, bound", [(64, 0.16), (32, 0.16)])
def test_w4a8_resnet18_file_size(tmp_path, group_size, bound):
    """W4A8 convs store int4 weights two per byte and a float32 scale per
    group: 12.5% + 3.1% (groups of 32) or 1.6% (64) of float32, plus the
    8-bit stem and classifier and the TorchScript program."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    qat = torchqat.prepare_qat(model, torchqat.QConfig.w4a8(group_size=group_size))
    torchqat.calibrate(qat, [torch.randn(4, 3, 32, 32)])
    torch.save(model.state_dict(), tmp_path / "fp32.pt")
    exported = torchqat.export(qat)
    x = torch.randn(2, 3, 32, 32)
    size = torchqat.save(exported, tmp_path / "w4a8.tqat", x)
    ratio = size / os.path.getsize(tmp_path / "fp32.pt")
    assert ratio <= bound, f"w4a8 (group {group_size}) file is {ratio:.3f} of the float32 state_dict"
    with torch.no_grad():
        assert torch.equal(torchqat.load(tmp_path / "w4a8.tqat")(x), exported(x))


@pytest.mark.parametrize("group_size, bound", [(64, 0.16), (32, 0.18)])
def test_w4a8_bert_file_size(tmp_path, group_size, bound):
    """W4A8 target: at most 16% of the float32 state_dict. Met with groups of
    64; groups of 32 carry a float32 scale per 32 weights (1/8 byte each, 3.1%
    of float32 on their own) and stay at about 17%."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=1024, max_position_embeddings=128, num_labels=5)
    model = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(0, 8000, (2, 64))
    qat = torchqat.prepare_qat(model, torchqat.QConfig.w4a8(group_size=group_size), example_inputs=(ids,))
    torchqat.calibrate(qat, [ids])
    qat.eval()
    torchqat.freeze(qat)
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    assert report.count("int4 table") == 3 and report.count("int4 weights x uint8 input") == 4 * 6, report
    torch.save(model.state_dict(), tmp_path / "fp32.pt")
    size = torchqat.save(exported, tmp_path / "w4a8.tqat", ids)
    ratio = size / os.path.getsize(tmp_path / "fp32.pt")
    assert ratio <= bound, f"w4a8 (group {group_size}) file is {ratio:.3f} of the float32 state_dict"
    with torch.no_grad():
        torch.testing.assert_close(torchqat.load(tmp_path / "w4a8.tqat")(ids)["logits"], exported(ids).logits)


@pytest.mark.skipif(not DEPLOY.exists(), reason="the C++ examples were not built (TORCHQAT_BUILD_TESTS=OFF)")
@pytest.mark.skipif(not DATA.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_cpp_deploy_program_gives_the_python_outputs(saved, tmp_path):
    path, _ = saved
    logits_file = tmp_path / "logits.bin"
    out = subprocess.run([str(DEPLOY), str(path), "--limit", "300", "--batch", "64", "--logits", str(logits_file)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "300 images, accuracy" in out.stdout
    cpp = torch.from_numpy(np.fromfile(logits_file, dtype=np.float32).reshape(300, 10))
    sys.path.insert(0, str(ROOT / "examples"))
    from common.fashion_mnist import load as load_fashion_mnist  # noqa: E402

    images = load_fashion_mnist("test", DATA)[0][:300]
    loaded = torchqat.load(path)
    with torch.no_grad():
        python = torch.cat([loaded(images[i:i + 64]) for i in range(0, 300, 64)])
    # The same program on the same kernels (the images are normalised by
    # each side's own code, so allow their float rounding).
    torch.testing.assert_close(cpp, python, rtol=1e-5, atol=1e-5)
    # A corrupted file is refused by the C++ program too, with the reason.
    bad = tmp_path / "bad.tqat"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    out = subprocess.run([str(DEPLOY), str(bad), "--limit", "10"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "checksum mismatch" in out.stderr
