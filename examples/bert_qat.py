"""BERT text classification, from float32 to a deployed INT8 model.

Data: Debian package descriptions labelled with their archive section (12
sections, up to 2,500 descriptions each; see examples/common/debian_corpus.py),
regenerated from the local APT index into results/debian_sections.csv, or
``--data CSV`` (text,label[,split]) for your own corpus.

Model: Hugging Face ``BertForSequenceClassification`` in a small configuration
(4 layers, hidden 256, 4 heads, FFN 1024) with a WordPiece vocabulary trained
here with ``tokenizers``, or ``--model DIR``, a local checkpoint directory
(its tokenizer is used). Pipeline: float32 fine-tune -> post-training
quantization for comparison -> QAT with ``QConfig.int8()`` -> export -> save ->
load -> evaluate and time (batch 1 and 16 at sequence length 128).

Writes results/bert_qat.json, .md and .png.

    python examples/bert_qat.py [--data CSV] [--model DIR] [--epochs 3] [--qat-epochs 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchqat  # noqa: E402
from common import debian_corpus, report  # noqa: E402
from common.pipeline import quantize_and_deploy  # noqa: E402
from common.training import accuracy, latency_ms, predict, train  # noqa: E402


def make_tokenizer(texts, model_dir, vocab_size):
    from tokenizers import BertWordPieceTokenizer

    if model_dir is not None:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        return lambda batch, length: hf(batch, padding="max_length", truncation=True, max_length=length,
                                        return_tensors="pt"), hf.vocab_size
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, show_progress=False)

    def encode(batch, length):
        tok.enable_padding(length=length)
        tok.enable_truncation(max_length=length)
        enc = tok.encode_batch(batch)
        return {"input_ids": torch.tensor([e.ids for e in enc]),
                "attention_mask": torch.tensor([e.attention_mask for e in enc])}

    return encode, tok.get_vocab_size()


def make_model(model_dir, vocab_size, num_labels):
    from transformers import BertConfig, BertForSequenceClassification

    if model_dir is not None:
        return BertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels, local_files_only=True)
    config = BertConfig(vocab_size=vocab_size, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=128, num_labels=num_labels,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return BertForSequenceClassification(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="CSV with text,label[,split] columns")
    parser.add_argument("--model", type=Path, default=None, help="local BERT checkpoint directory")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--qat-epochs", type=float, default=1.0)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=32, help="tokens per text in training")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--qat-lr", type=float, default=5e-5)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--out-dir", type=Path, default=Path("results"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.time()
    torch.manual_seed(args.seed)

    data = args.data
    if data is None:
        data = args.out_dir / "debian_sections.csv"
        counts = debian_corpus.build(data)
        print(f"corpus: {sum(counts.values())} Debian package descriptions in {len(counts)} sections -> {data}")
    train_text, train_label, test_text, test_label = debian_corpus.load(data)
    train_text, train_label = train_text[:args.train_subset], train_label[:args.train_subset]
    test_text, test_label = test_text[:args.test_subset], test_label[:args.test_subset]
    labels = sorted(set(train_label))
    index = {name: i for i, name in enumerate(labels)}
    train_y = torch.tensor([index[y] for y in train_label])
    test_y = torch.tensor([index.get(y, -1) for y in test_label])
    print(f"{len(train_text)} training and {len(test_text)} test texts, {len(labels)} labels")

    encode, vocab_size = make_tokenizer(train_text, args.model, args.vocab_size)
    train_enc = encode(train_text, args.max_length)
    test_enc = encode(test_text, args.max_length)

    def train_batch(idx):
        return {k: v[idx] for k, v in train_enc.items()}, train_y[idx]

    def test_batch(idx):
        return {k: v[idx] for k, v in test_enc.items()}, test_y[idx]

    def evaluate(model, desc):
        return predict(model, test_batch, len(test_y), 256, desc)

    model = make_model(args.model, vocab_size, len(labels))
    train(model, train_batch, len(train_y), args.epochs, args.batch_size, args.lr, "float32 fine-tune",
          weight_decay=0.01, optimizer="adamw", seed=args.seed)
    model.eval()
    fp32_logits = evaluate(model, "float32 eval")
    results = {"model": "BERT (4 layers, hidden 256)" if args.model is None else str(args.model),
               "qconfig": "int8", "data": str(data), "labels": labels,
               "fp32_acc": accuracy(fp32_logits, test_y)}
    print(f"float32 accuracy {results['fp32_acc']:.4f}")

    calib = [{k: v[i:i + 128] for k, v in train_enc.items()} for i in range(0, min(len(train_y), 1024), 128)]
    with tempfile.TemporaryDirectory() as tmp:

        def fine_tune(qat):
            train(qat, train_batch, len(train_y), args.qat_epochs, args.batch_size, args.qat_lr, "QAT (int8)",
                  weight_decay=0.01, optimizer="adamw", seed=args.seed + 1)

        deployed = quantize_and_deploy(model, torchqat.QConfig.int8(), calib, fine_tune, evaluate, test_y,
                                       {k: v[:2] for k, v in test_enc.items()}, Path(tmp), "bert", results).deployed

        # Latency at sequence length 128 (texts padded), batch 1 and 16.
        timing = encode(test_text[:16], 128)
        for batch in (1, 16):
            inputs = {k: v[:batch] for k, v in timing.items()}
            results[f"fp32_latency_ms_b{batch}"] = latency_ms(lambda: model(**inputs))
            results[f"int8_latency_ms_b{batch}"] = latency_ms(lambda: deployed(**inputs))
    results["seconds"] = time.time() - start
    results["machine"] = report.machine()
    report.write(args.out_dir, "bert_qat", "BERT on Debian package sections", results, 16)


if __name__ == "__main__":
    main()
