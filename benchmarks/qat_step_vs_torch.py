"""A QAT training step against the float step and against PyTorch's own QAT,
side by side in one run:

* ResNet-18 (torchvision, 10 classes), batch 32, 3x32x32 input; float32 also
  with ``torchqat.nn.fast_small_map_convs`` (the weight gradient torchqat's
  QAT convs use);
* a small BERT (transformers BertForSequenceClassification, hidden 256,
  4 layers, 4 heads), batch 16, sequence 128.

Per model: float32; torchqat ``prepare_qat(QConfig.int8())``; torch.ao eager
``prepare_qat`` with the x86 QAT qconfig (ResNet: torchvision's quantizable
ResNet-18 fused for QAT; BERT: its Linear layers); torchao's QAT
(``quantize_(model, QATConfig(...))``: int8 per-token activations, int8
per-channel weights; torchao fake-quantizes Linear layers only, so on ResNet it
covers the classifier alone). A step is forward, backward and an SGD
(momentum) update. The variants of a model are built side by side and their
steps interleaved (one step of each in turn, ``--steps`` rounds after
warm-up; the median per variant), so drift in this machine's speed hits them
alike. Training memory is the peak resident memory of training
above that of the built model and its inputs (activations, gradients,
optimizer state), measured in a second fresh process in which glibc returns
every block of 64 KB or more to the system when it is freed
(MALLOC_MMAP_THRESHOLD_), so the high-water mark counts live tensors rather
than allocator caching.

    python benchmarks/qat_step_vs_torch.py [--threads 2] [--steps 10]

Writes results/bench_qat_step.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import torchqat
from bench_util import machine, print_table, write_json


def resnet_inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(32, 3, 32, 32, generator=gen), torch.randint(0, 10, (32,), generator=gen)


def bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                      intermediate_size=1024, max_position_embeddings=128, num_labels=2)


def bert_inputs():
    gen = torch.Generator().manual_seed(0)
    return dict(input_ids=torch.randint(0, 8000, (16, 128), generator=gen),
                attention_mask=torch.ones(16, 128, dtype=torch.long), labels=torch.randint(0, 2, (16,), generator=gen))


def torchao_qat(model):
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    act = IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
    weight = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    quantize_(model, QATConfig(activation_config=act, weight_config=weight, step="prepare"))
    return model


def ao_eager_resnet():
    import torch.ao.quantization as tq
    from torchvision.models.quantization import resnet18

    model = resnet18(num_classes=10, quantize=False).train()
    model.fuse_model(is_qat=True)
    model.qconfig = tq.get_default_qat_qconfig("x86")
    return tq.prepare_qat(model)


def ao_eager_bert(model):
    import torch.ao.quantization as tq

    qconfig = tq.get_default_qat_qconfig("x86")
    for m in model.modules():
        m.qconfig = qconfig if isinstance(m, torch.nn.Linear) else None
    return tq.prepare_qat(model)


# Keeps the float model's convs on torchqat's weight gradient for the whole run.
_FAST_GRAD = contextlib.ExitStack()


def resnet_variants():
    from torchvision.models import resnet18

    def float_model():
        torch.manual_seed(0)
        return resnet18(num_classes=10)

    return {
        "float32": float_model,
        # torchqat's QAT convs compute small maps' weight gradients by per-tap
        # GEMMs (torchqat/nn/conv_grad.py); the same for float, to compare like with like.
        "float32, fast conv weight grad": lambda: _FAST_GRAD.enter_context(
            torchqat.nn.fast_small_map_convs(float_model())),
        "torchqat int8": lambda: torchqat.prepare_qat(float_model(), torchqat.QConfig.int8()),
        "torch.ao eager (x86)": ao_eager_resnet,
        "torchao QAT (Linear only)": lambda: torchao_qat(float_model()),
    }


def bert_variants():
    from transformers import BertForSequenceClassification

    def float_model():
        torch.manual_seed(0)
        return BertForSequenceClassification(bert_config())

    return {
        "float32": float_model,
        "torchqat int8": lambda: torchqat.prepare_qat(float_model(), torchqat.QConfig.int8()),
        "torch.ao eager (x86)": lambda: ao_eager_bert(float_model()),
        "torchao QAT": lambda: torchao_qat(float_model()),
    }


def make_step(model, loss_fn):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        opt.step()

    return step


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(make_model, loss_fn, steps: int, warmup: int = 3):
    """(median step seconds, peak training bytes above the model at rest)."""
    model = make_model().train()
    step = make_step(model, loss_fn)
    at_rest = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (_status_kib("VmHWM") - at_rest) * 1024


def run_one(model_name: str, variant: str, threads: int, steps: int) -> None:
    """Child process: the training memory of one (model, variant), as a JSON line."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    variants, loss_fn = MODELS[model_name]()
    _, peak = measure(variants[variant], loss_fn, steps)
    print(json.dumps(dict(peak=peak)))


def interleaved_step_seconds(model_name: str, threads: int, steps: int, warmup: int = 3) -> dict:
    torch.set_num_threads(threads)
    variants, loss_fn = MODELS[model_name]()
    step_fns = {}
    for name, make in variants.items():
        step_fns[name] = make_step(make().train(), loss_fn)
    times = {name: [] for name in step_fns}
    for round_ in range(warmup + steps):
        for name, step in step_fns.items():
            t0 = time.perf_counter()
            step()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def resnet_case():
    x, y = resnet_inputs()
    return resnet_variants(), lambda m: F.cross_entropy(m(x), y)


def bert_case():
    batch = bert_inputs()
    return bert_variants(), lambda m: m(**batch).loss


MODELS = {"ResNet-18 b32 32x32": resnet_case, "BERT small b16 s128": bert_case}
VARIANTS = {"ResNet-18 b32 32x32": list(resnet_variants()), "BERT small b16 s128": list(bert_variants())}


TIGHT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _child(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", default="results/bench_qat_step.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args.one[0], args.one[1], args.threads[0], args.steps)
    rows = []
    for threads in args.threads:
        for model_name, names in VARIANTS.items():
            seconds = interleaved_step_seconds(model_name, threads, args.steps)
            base = None
            for name in names:
                cmd = [sys.executable, __file__, "--one", model_name, name, "--threads", str(threads), "--steps", "3"]
                r = dict(seconds=seconds[name], peak=_child(cmd, TIGHT_MALLOC)["peak"])
                base = base or r
                rows.append(dict(threads=threads, model=model_name, variant=name, step_ms=1e3 * r["seconds"],
                                 vs_float=r["seconds"] / base["seconds"], peak_mb=r["peak"] / 2**20,
                                 mem_vs_float=r["peak"] / base["peak"]))
                print(f"{model_name:22s} {name:28s} {1e3 * r['seconds']:8.1f} ms  x{rows[-1]['vs_float']:.2f}  "
                      f"train mem {r['peak'] / 2**20:.0f} MB  x{rows[-1]['mem_vs_float']:.2f}", flush=True)
    print()
    print_table(rows, [("threads", "threads", ""), ("model", "model", ""), ("QAT", "variant", ""),
                       ("step ms", "step_ms", ".1f"), ("step vs float", "vs_float", ".2f"),
                       ("training memory MB", "peak_mb", ".0f"), ("memory vs float", "mem_vs_float", ".2f")])
    write_json(args.out, dict(machine=machine(), rows=rows))


if __name__ == "__main__":
    main()
