"""The end-to-end examples' report: JSON, a markdown table and a PNG plot."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Dict, List

import torch


def machine() -> Dict[str, object]:
    import torchqat

    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "kernels": torchqat._C.active_isa(), "torch": torch.__version__.split("+")[0]}


def deployed_name(qconfig: str) -> str:
    """What the exported model is called in reports (the JSON keeps the
    int8_* keys for every preset)."""
    return {"int8": "INT8", "w4a8": "W4A8", "w4a4_lsq": "W4A4 (LSQ)"}.get(qconfig, qconfig)


def markdown(title: str, r: Dict[str, object], batch_large: int) -> str:
    name = deployed_name(str(r["qconfig"]))
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    mb = lambda v: f"{v / 1e6:.2f} MB"  # noqa: E731
    rows: List[str] = [
        f"# {title}",
        "",
        f"qconfig `{r['qconfig']}`, {r['seconds']:.0f} s, {r['machine']}",
        "",
        "| model | test accuracy | file size | latency batch 1 | latency batch " + str(batch_large) + " |",
        "|---|---|---|---|---|",
        f"| float32 | {pct(r['fp32_acc'])} | {mb(r['fp32_size_bytes'])} | {r['fp32_latency_ms_b1']:.2f} ms | "
        f"{r[f'fp32_latency_ms_b{batch_large}']:.1f} ms |",
        f"| post-training quantization (calibrated, exported) | {pct(r['ptq_acc'])} | | | |",
        f"| QAT (fake-quantized, eval) | {pct(r['qat_acc'])} | | | |",
        f"| exported {name} (saved, reloaded) | {pct(r['int8_acc'])} | {mb(r['int8_size_bytes'])} | "
        f"{r['int8_latency_ms_b1']:.2f} ms | {r[f'int8_latency_ms_b{batch_large}']:.1f} ms |",
        "",
        f"- exported vs QAT top-1 agreement: {pct(r['export_qat_agreement'])}",
        f"- {name} speed-up: {r['fp32_latency_ms_b1'] / r['int8_latency_ms_b1']:.2f}x at batch 1, "
        f"{r[f'fp32_latency_ms_b{batch_large}'] / r[f'int8_latency_ms_b{batch_large}']:.2f}x at batch {batch_large}",
        f"- {name} file: {100 * r['int8_size_bytes'] / r['fp32_size_bytes']:.1f}% of the float32 state_dict",
    ]
    if r.get("onnx_agreement") is not None:
        rows.append(f"- ONNX Runtime (QDQ file) vs exported top-1 agreement: {pct(r['onnx_agreement'])}, "
                    f"accuracy {pct(r['onnx_acc'])}")
    return "\n".join(rows) + "\n"


def plot(path: Path, title: str, r: Dict[str, object], batch_large: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    deployed = deployed_name(str(r["qconfig"]))
    names = ["float32", "PTQ", "QAT", f"{deployed} export"]
    accs = [r["fp32_acc"], r["ptq_acc"], r["qat_acc"], r["int8_acc"]]
    left.bar(names, [100 * a for a in accs], color=["#777", "#c96", "#69c", "#393"])
    low = min(100 * a for a in accs)
    left.set_ylim(max(0.0, low - 5), 100)
    left.set_ylabel("test accuracy (%)")
    left.set_title("accuracy")
    for i, a in enumerate(accs):
        left.text(i, 100 * a, f"{100 * a:.2f}", ha="center", va="bottom", fontsize=8)
    xs = range(2)
    fp = [r["fp32_latency_ms_b1"], r[f"fp32_latency_ms_b{batch_large}"]]
    q = [r["int8_latency_ms_b1"], r[f"int8_latency_ms_b{batch_large}"]]
    right.bar([x - 0.2 for x in xs], fp, width=0.4, label="float32", color="#777")
    right.bar([x + 0.2 for x in xs], q, width=0.4, label=deployed, color="#393")
    right.set_xticks(list(xs), ["batch 1", f"batch {batch_large}"])
    right.set_yscale("log")
    right.set_ylabel("latency (ms, log)")
    right.set_title("latency")
    right.legend()
    fig.suptitle(f"{title} ({r['qconfig']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out_dir: Path, name: str, title: str, results: Dict[str, object], batch_large: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2))
    text = markdown(title, results, batch_large)
    (out_dir / f"{name}.md").write_text(text)
    plot(out_dir / f"{name}.png", title, results, batch_large)
    print("\n" + text)
    print(f"wrote {out_dir / name}.json, .md, .png")
