"""Latency of exported models, side by side in one run: float32 eager,
torchqat INT8 (the model file torchqat.save writes, loaded back), PyTorch's
INT8 (torch.ao FX convert with the x86 engine) and ONNX Runtime on torchqat's
QDQ files: uint8 weights (the default of export_onnx: ORT's exact u8u8
kernels) and int8 weights (its u8s8 kernels: faster, but saturating int16
pair sums on CPUs without VNNI).

    python benchmarks/deploy_vs_torch.py [--threads 1 2] [--min-run-time 1]

Models (random weights, calibrated on random data: latency does not depend on
the values): ResNet-18 at 3x224x224, batch 1 and 32 (--image to change), and a
small BERT (4 layers, hidden 256, 4 heads, FFN 1024) at sequence 128, batch 1
and 16. Writes results/bench_deploy.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import warnings
from pathlib import Path

import torch
import torchvision

import torchqat
from bench_util import machine, median_seconds, print_table, write_json


def _torchqat_int8(model, example, calib, tmp: Path, name: str):
    qat = torchqat.prepare_qat(model, torchqat.QConfig.int8())
    torchqat.calibrate(qat, calib)
    qat.eval()
    torchqat.enable_observer(qat, False)
    exported = torchqat.export(qat)
    torchqat.save(exported, tmp / f"{name}.tqat", example)
    onnx_paths = {dtype: torchqat.export_onnx(qat, example, tmp / f"{name}_{dtype}.onnx", output_names=["output"],
                                              weight_dtype=dtype) for dtype in ("uint8", "int8")}
    return torchqat.load(tmp / f"{name}.tqat"), onnx_paths


def _torch_ao_int8(model, example, calib):
    """torch.ao's FX post-training path (x86 engine): the INT8 model PyTorch
    itself deploys (same numbers as its QAT convert)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), example)
        with torch.no_grad():
            for batch in calib:
                prepared(*batch) if isinstance(batch, tuple) else prepared(batch)
        return convert_fx(prepared)


def _ort_session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def resnet_cases(image: int, batches, tmp: Path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    calib = [torch.randn(4, 3, image, image)]
    ours, onnx_paths = _torchqat_int8(model, calib[0][:1], calib, tmp, "resnet18")
    try:
        ao = _torch_ao_int8(model, (calib[0][:1],), [(c,) for c in calib])
    except Exception as e:  # noqa: BLE001  (a torch without torch.ao's quantized engine)
        print(f"torch.ao INT8 unavailable: {e}")
        ao = None
    for batch in batches:
        x = torch.randn(batch, 3, image, image)
        fns = {"float32 eager": lambda x=x: model(x), "torchqat INT8": lambda x=x: ours(x)}
        if ao is not None:
            fns["torch.ao INT8 (x86)"] = lambda x=x: ao(x)
        for dtype, path in onnx_paths.items():
            fns[f"ONNX Runtime (QDQ, {dtype} weights)"] = ("onnx", path, {"input0": x.numpy()})
        yield f"ResNet-18 {image}x{image}", batch, fns


def bert_cases(seq: int, batches, tmp: Path):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512, num_labels=2)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(0, 8000, (2, seq))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ours, onnx_paths = _torchqat_int8(model, example, [example], tmp, "bert")
    for batch in batches:
        ids = torch.randint(0, 8000, (batch, seq))
        mask = torch.ones_like(ids)
        fns = {"float32 eager": lambda i=ids, m=mask: model(input_ids=i, attention_mask=m),
               "torchqat INT8": lambda i=ids, m=mask: ours(input_ids=i, attention_mask=m)}
        for dtype, path in onnx_paths.items():
            fns[f"ONNX Runtime (QDQ, {dtype} weights)"] = ("onnx", path, {"input_ids": ids.numpy(),
                                                                          "attention_mask": mask.numpy()})
        yield f"BERT small s{seq}", batch, fns


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--out", default="results/bench_deploy.json")
    args = parser.parse_args()
    print(f"kernels: {torchqat._C.active_isa()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        cases = list(resnet_cases(args.image, [1, 32], Path(tmp))) + list(bert_cases(args.seq, [1, 16], Path(tmp)))
        for threads in args.threads:
            for model_name, batch, fns in cases:
                secs = {}
                for name, fn in fns.items():
                    if isinstance(fn, tuple):  # ONNX Runtime: a session per thread count
                        session, feed = _ort_session(fn[1], threads), fn[2]
                        fn = lambda s=session, f=feed: s.run(None, f)  # noqa: E731
                    secs[name] = median_seconds(fn, threads, args.min_run_time)
                base = secs["float32 eager"]
                for name, s in secs.items():
                    rows.append(dict(model=model_name, batch=batch, threads=threads, impl=name, ms=1e3 * s,
                                     per_second=batch / s, vs_float=base / s))
                print(f"t={threads} {model_name} b{batch}: " +
                      ", ".join(f"{n} {1e3 * s:.1f} ms" for n, s in secs.items()), flush=True)
    write_json(args.out, {"machine": machine(), "rows": rows})
    print_table(rows, [("model", "model", ""), ("batch", "batch", "d"), ("threads", "threads", "d"),
                       ("implementation", "impl", ""), ("ms", "ms", ".1f"), ("items/s", "per_second", ".1f"),
                       ("vs float32", "vs_float", ".2f")])


if __name__ == "__main__":
    main()
