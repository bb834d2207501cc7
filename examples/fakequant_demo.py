"""A short, real quantization-aware-training run with torchqat's fake-quant ops.

A small CNN is trained in float32 on Fashion-MNIST, then fine-tuned with
fake-quantized weights and activations at several precisions:

* int8:  weights int8 per output channel (symmetric), activations uint8 per
         tensor (affine, range from a moving average of min/max);
* w4a8:  weights int4 in groups of 32 along the input dimension (the first
         and last layers stay int8, as the QAT literature does), activations uint8;
* fp8:   weights and activations e4m3 with amax scaling, calibrated only (no
         training): what FP8 gives without QAT.

The quantizers here are deliberately small wrappers over the ops (weights:
range from the current weights through qparams_from_range; activations: the
fused observe_fake_quantize op with a moving-average range) to show them on
their own; the library's QAT modules take over this role. BatchNorm is kept unfolded, so this is a training
demonstration, not a deployable model.

    python examples/fakequant_demo.py [--epochs 2] [--qat-epochs 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchqat  # noqa: E402
from common import fashion_mnist  # noqa: E402


@dataclass(frozen=True)
class Precision:
    name: str
    weight_bits: Optional[int] = None  # None: float weights
    group_size: Optional[int] = None  # None: per output channel
    act_bits: Optional[int] = None
    fp8: bool = False


FLOAT = Precision("float32")
INT8 = Precision("int8", weight_bits=8, act_bits=8)
W4A8 = Precision("w4a8", weight_bits=4, group_size=32, act_bits=8)
FP8 = Precision("fp8 (e4m3)", fp8=True)


class WeightQuant(nn.Module):
    """Symmetric weight fake-quant, the range taken from the current weights."""

    def __init__(self, bits: Optional[int], group_size: Optional[int], fp8: bool):
        super().__init__()
        self.bits, self.group_size, self.fp8 = bits, group_size, fp8

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits is None and not self.fp8:
            return w
        flat = w.reshape(w.shape[0], -1)
        per_group = self.group_size is not None and flat.shape[1] % self.group_size == 0
        stats = flat.detach().reshape(flat.shape[0], -1, self.group_size) if per_group else flat.detach()
        amax = stats.abs().amax(dim=-1)
        if self.fp8:
            return torchqat.fake_quantize_fp8(w, amax.clamp_min(1e-12) / 448.0, "e4m3", axis=0)
        qmin, qmax = torchqat.quant_range(self.bits, signed=True, narrow_range=True)
        scale, zero_point = torchqat.qparams_from_range(-amax, amax, qmin, qmax, symmetric=True)
        if per_group:
            out = torchqat.fake_quantize(flat, scale, zero_point, qmin, qmax, group_size=self.group_size)
            return out.reshape(w.shape)
        return torchqat.fake_quantize(w, scale, zero_point, qmin, qmax, axis=0)


class ActQuant(nn.Module):
    """Per-tensor activation fake-quant over a moving-average min/max range,
    with torchqat's fused observe-and-fake-quantize op."""

    def __init__(self, bits: Optional[int], fp8: bool, averaging_constant: float = 0.01):
        super().__init__()
        self.bits, self.fp8, self.averaging_constant = bits, fp8, averaging_constant
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.observe = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits is None and not self.fp8:
            return x
        qmin, qmax = torchqat.quant_range(self.bits or 8, signed=False)
        y = torchqat.observe_fake_quantize(x, self.lo, self.hi, qmin, qmax, False, self.averaging_constant,
                                           observe=self.observe, fake_quant=not self.fp8)
        if self.fp8:  # the op only tracked the range
            amax = torch.maximum(-self.lo, self.hi).clamp_min(1e-12).reshape(1)
            return torchqat.fake_quantize_fp8(x, amax / 448.0, "e4m3")
        return y


class QuantConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(self.act_quant(x), self.weight_quant(self.weight), self.bias, self.stride, self.padding)


class QuantLinear(nn.Linear):
    def forward(self, x):
        return F.linear(self.act_quant(x), self.weight_quant(self.weight), self.bias)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = QuantConv(1, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = QuantConv(32, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.fc1, self.fc2 = QuantLinear(64 * 7 * 7, 128), QuantLinear(128, 10)
        self.set_precision(FLOAT)

    def set_precision(self, p: Precision) -> None:
        for name, layer in self.quantized_layers():
            edge = name in ("conv1", "fc2")  # first and last layers stay at 8 bits
            bits = 8 if (edge and p.weight_bits is not None) else p.weight_bits
            layer.weight_quant = WeightQuant(bits, None if edge else p.group_size, p.fp8)
            layer.act_quant = ActQuant(p.act_bits, p.fp8)

    def quantized_layers(self):
        return [(n, m) for n, m in self.named_children() if isinstance(m, (QuantConv, QuantLinear))]

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def batches(x, y, batch_size, shuffle, gen=None):
    order = torch.randperm(len(x), generator=gen) if shuffle else torch.arange(len(x))
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


def train(model, data, epochs, lr, desc, gen):
    x, y = data
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    with tqdm(total=steps, desc=desc, unit="step", leave=False, mininterval=2.0) as bar:
        for _ in range(epochs):
            for xb, yb in batches(x, y, 128, True, gen):
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()


@torch.no_grad()
def accuracy(model, data):
    model.eval()
    for _, layer in model.quantized_layers():
        layer.act_quant.observe = False
    x, y = data
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in batches(x, y, 1000, False))
    for _, layer in model.quantized_layers():
        layer.act_quant.observe = True
    return correct / len(x)


@torch.no_grad()
def calibrate(model, data, n_batches=20):
    """Observe activation ranges over a few batches (BN in eval: its statistics stay)."""
    model.eval()
    for i, (xb, _) in enumerate(batches(*data, 256, False)):
        if i == n_batches:
            break
        model(xb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=fashion_mnist.DEFAULT_DIR)
    parser.add_argument("--epochs", type=int, default=2, help="float32 training epochs")
    parser.add_argument("--qat-epochs", type=int, default=1, help="QAT fine-tuning epochs per precision")
    parser.add_argument("--train-subset", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--out", type=Path, default=Path("results/fakequant_demo.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    start = time.time()
    train_data = fashion_mnist.load("train", args.data)
    test_data = fashion_mnist.load("test", args.data)
    if args.train_subset:
        train_data = tuple(t[: args.train_subset] for t in train_data)
    print(f"Fashion-MNIST: {len(train_data[0])} training, {len(test_data[0])} test images; "
          f"torchqat kernels: {torchqat._C.active_isa()}, threads: {torch.get_num_threads()}")

    model = SmallCNN()
    train(model, train_data, args.epochs, 0.05, "float32 training", gen)
    float_state = {k: v.clone() for k, v in model.state_dict().items()}
    results = {"float32": {"acc": accuracy(model, test_data), "trained": "float"}}

    # The same fine-tuning without quantization: what the extra epochs alone buy.
    train(model, train_data, args.qat_epochs, 0.01, "float32 fine-tuning", gen)
    results["float32 fine-tuned"] = {"acc": accuracy(model, test_data), "trained": "float"}

    for p in (INT8, W4A8):
        model.load_state_dict(float_state)
        model.set_precision(p)
        calibrate(model, train_data)
        ptq = accuracy(model, test_data)
        train(model, train_data, args.qat_epochs, 0.01, f"QAT {p.name}", gen)
        results[p.name] = {"acc": accuracy(model, test_data), "ptq_acc": ptq, "trained": "QAT"}

    model.load_state_dict(float_state)
    model.set_precision(FP8)
    calibrate(model, train_data)
    results[FP8.name] = {"acc": accuracy(model, test_data), "trained": "calibrated only"}

    seconds = time.time() - start
    print("\nQAT and 'float32 fine-tuned' start from the float32 model and train the same extra epochs.")
    print("\n| precision | test accuracy | before QAT (calibrated only) |")
    print("|---|---|---|")
    for name, r in results.items():
        ptq = f"{100 * r['ptq_acc']:.2f}%" if "ptq_acc" in r else "-"
        print(f"| {name} | {100 * r['acc']:.2f}% | {ptq} |")
    print(f"\n{seconds:.0f} s in all")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "seconds": seconds, "epochs": args.epochs,
                                    "qat_epochs": args.qat_epochs}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
