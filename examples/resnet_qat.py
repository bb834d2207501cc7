"""ResNet-18 on Fashion-MNIST, from float32 to a deployed INT8 model.

1. float32: torchvision's ResNet-18 class, its stem adapted to 1-channel
   28x28 images (a 3x3 stride-2 conv instead of the 7x7 RGB one; the max-pool
   kept, so layer1 sees 7x7), trained here (or loaded from the checkpoint an
   earlier run with the same settings left in results/);
2. post-training quantization for comparison, QAT with the chosen preset, export,
   save, load (examples/common/pipeline.py; calibration on 2,000 training images);
3. for int8 and w4a8 also ``torchqat.export_onnx`` run by ONNX Runtime (w4a8: INT4 weight blocks).

Writes results/resnet_qat.json, .md and .png. Defaults fit `make demo`'s
15-minute budget on 2 cores (float32: 4 epochs over all 60,000 images, about
4 minutes on the development machine; QAT: one epoch over 20,000);
``--long`` trains 15 + 3 epochs with augmentation.

    python examples/resnet_qat.py [--qconfig int8|w4a8|w4a4_lsq] [--long] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchqat  # noqa: E402
from common import fashion_mnist, report  # noqa: E402
from common.pipeline import quantize_and_deploy  # noqa: E402
from common.training import accuracy, agreement, latency_ms, predict, train  # noqa: E402

PRESETS = {"int8": torchqat.QConfig.int8, "w4a8": torchqat.QConfig.w4a8, "w4a4_lsq": torchqat.QConfig.w4a4_lsq}


def resnet18_fashion_mnist() -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=2, padding=1, bias=False)
    return model


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 2-pixel shifts (pad and crop) and horizontal flips, per batch."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=float(x.min()))
    dy, dx = torch.randint(0, 5, (2,), generator=generator).tolist()
    out = padded[:, :, dy:dy + 28, dx:dx + 28]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qconfig", choices=list(PRESETS), default="int8")
    parser.add_argument("--data", type=Path, default=fashion_mnist.DEFAULT_DIR)
    parser.add_argument("--epochs", type=float, default=4.0, help="float32 training epochs")
    parser.add_argument("--qat-epochs", type=float, default=1.0)
    parser.add_argument("--train-subset", type=int, default=60000, help="training images used (of 60,000)")
    parser.add_argument("--qat-subset", type=int, default=20000, help="training images used for QAT")
    parser.add_argument("--test-subset", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--qat-lr", type=float, default=0.002)
    parser.add_argument("--augment", action="store_true", help="random shifts and flips (helps long runs only)")
    parser.add_argument("--long", action="store_true",
                        help="all 60,000 images, 15 float + 3 QAT epochs, augmentation")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime check")
    parser.add_argument("--out-dir", type=Path, default=Path("results"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.long:
        args.epochs, args.qat_epochs, args.train_subset, args.qat_subset = 15.0, 3.0, 60000, 60000
        args.augment = True
    start = time.time()
    torch.manual_seed(args.seed)

    train_x, train_y = fashion_mnist.load("train", args.data)
    test_x, test_y = fashion_mnist.load("test", args.data)
    test_x, test_y = test_x[:args.test_subset], test_y[:args.test_subset]
    aug_gen = torch.Generator().manual_seed(args.seed)

    def train_batch(idx):
        return (augment(train_x[idx], aug_gen) if args.augment else train_x[idx]), train_y[idx]

    def test_batch(idx):
        return test_x[idx], test_y[idx]

    def evaluate(model, desc):
        return predict(model, test_batch, len(test_y), 256, desc)

    # 1. float32
    args.out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"epochs": args.epochs, "train_subset": args.train_subset, "lr": args.lr, "seed": args.seed,
                "augment": args.augment}
    checkpoint = args.out_dir / "resnet18_fashion_mnist_fp32.pt"
    model = resnet18_fashion_mnist()
    cached = torch.load(checkpoint) if checkpoint.exists() else None
    if cached is not None and cached.get("settings") == settings:
        model.load_state_dict(cached["state_dict"])
        print(f"float32 model loaded from {checkpoint} (same settings)")
    else:
        train(model, train_batch, args.train_subset, args.epochs, args.batch_size, args.lr, "float32 training",
              seed=args.seed, channels_last=True)
        torch.save({"settings": settings, "state_dict": model.state_dict()}, checkpoint)
    model.eval()
    fp32_logits = evaluate(model, "float32 eval")
    results = {"model": "ResNet-18 (1x28x28 stem)", "qconfig": args.qconfig, "fp32_acc": accuracy(fp32_logits, test_y)}
    print(f"float32 accuracy {results['fp32_acc']:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = [train_x[i:i + 250] for i in range(0, 2000, 250)]

        def fine_tune(qat):
            train(qat, train_batch, args.qat_subset, args.qat_epochs, args.batch_size, args.qat_lr,
                  f"QAT ({args.qconfig})", seed=args.seed + 1, channels_last=True)

        out = quantize_and_deploy(model, PRESETS[args.qconfig](), calib, fine_tune, evaluate, test_y, test_x[:1],
                                  tmp, "resnet18", results)
        deployed = out.deployed
        if args.qconfig in ("int8", "w4a8") and not args.no_onnx:
            import onnxruntime as ort

            onnx_path = torchqat.export_onnx(out.qat, test_x[:2], tmp / "resnet18.onnx")
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            onnx_logits = predict(lambda x: torch.from_numpy(session.run(None, {"input0": x.numpy()})[0]),
                                  test_batch, len(test_y), 256, "ONNX Runtime eval")
            results["onnx_acc"] = accuracy(onnx_logits, test_y)
            results["onnx_agreement"] = agreement(onnx_logits, out.int8_logits)

        for batch in (1, 32):
            x = test_x[:batch]
            results[f"fp32_latency_ms_b{batch}"] = latency_ms(lambda: model(x))
            results[f"int8_latency_ms_b{batch}"] = latency_ms(lambda: deployed(x))
    results["seconds"] = time.time() - start
    results["machine"] = report.machine()
    report.write(args.out_dir, "resnet_qat", "ResNet-18 on Fashion-MNIST", results, 32)


if __name__ == "__main__":
    main()
