"""torchqat.export_onnx: a standard QDQ model that ONNX Runtime runs with its
integer kernels (W4A8 weights as INT4 blocks), agreeing with torchqat's
exported model."""

import os

import numpy as np
import pytest
import torch
import torchvision

import torchqat
from torchqat.deploy.lower import effective_weight_and_bias, fake_quantized_weight

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402


def _calibrated(model, batches, qconfig=None):
    qat = torchqat.prepare_qat(model, qconfig or torchqat.QConfig.int8())
    torchqat.calibrate(qat, batches)
    qat.eval()
    torchqat.enable_observer(qat, False)
    return qat


def _session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _weight_initializers(graph):
    """{DequantizeLinear input name: (integers, zero point)} of the weights."""
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out = {}
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim >= 2:
            out[n.input[0]] = (inits[n.input[0]], inits.get(n.input[2]) if len(n.input) > 2 else None)
    return inits, out


@pytest.mark.parametrize("weight_dtype", ["uint8", "int8"])
def test_resnet18_qdq_runs_in_onnxruntime_like_the_exported_model(tmp_path, weight_dtype):
    torch.manual_seed(0)
    qat = _calibrated(torchvision.models.resnet18(num_classes=10), [torch.randn(8, 3, 32, 32)])
    path = torchqat.export_onnx(qat, torch.randn(2, 3, 32, 32), tmp_path / "r18.onnx", weight_dtype=weight_dtype)
    graph = onnx.load(str(path)).graph
    # Weights are 8-bit initializers read by DequantizeLinear, with the trained scales.
    inits, weights = _weight_initializers(graph)
    assert len(weights) == 21  # 20 convs + fc
    assert all(w.dtype.name == weight_dtype for w, _ in weights.values())
    assert not any(a.dtype.name == "float32" and a.size > 1000 for a in inits.values()), "float weights left"
    # The first weight's integers are the QAT conv1's (BN folded), shifted by the zero point.
    q_w = qat.get_submodule("conv1").weight_quantizer
    w_scale, _ = q_w.qparams()
    first_w, first_zero = next(iter(weights.values()))
    assert int(first_zero.reshape(-1)[0]) == (128 if weight_dtype == "uint8" else 0)
    w_fq = q_w(torchqat.deploy.lower.effective_weight_and_bias(qat.get_submodule("conv1"))[0])
    expected = torch.round(w_fq / w_scale.reshape(-1, 1, 1, 1)) + (128 if weight_dtype == "uint8" else 0)
    assert torch.equal(torch.from_numpy(first_w.astype(np.int32)), expected.to(torch.int32))
    q_in = qat.get_submodule("conv1").input_quantizer
    scale, zero = q_in.qparams()
    first_q = next(n for n in graph.node if n.op_type == "QuantizeLinear")
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"}
    got_scale = consts.get(first_q.input[1], inits.get(first_q.input[1]))
    assert float(got_scale) == pytest.approx(float(scale), rel=1e-7)
    exported = torchqat.export(qat)
    torch.manual_seed(1)
    x = torch.randn(256, 3, 32, 32)  # another batch size: the batch dimension is dynamic
    ours = exported(x)
    theirs = torch.from_numpy(_session(path).run(None, {"input0": x.numpy()})[0])
    agree = (theirs.argmax(1) == ours.argmax(1)).float().mean()
    if weight_dtype == "uint8":
        # u8u8 kernels are exact: differences are requantization ties only
        # (measured: top-1 equal on all 256 inputs, max difference 2.4% of the largest output).
        assert (theirs - ours).abs().max() <= 0.05 * ours.abs().max()
        assert agree >= 0.995
    elif not _has_vnni():
        # u8s8 without VNNI saturates int16 pair sums (measured: 0.91 top-1 agreement).
        assert agree >= 0.8
    else:
        assert agree >= 0.995


def _has_vnni() -> bool:
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return "avx512_vnni" in flags or "avx_vnni" in flags


def test_weight_dtype_is_checked(tmp_path):
    qat = _calibrated(torch.nn.Sequential(torch.nn.Linear(4, 4)), [torch.randn(2, 4)])
    with pytest.raises(ValueError, match=r"weight_dtype must be one of \['int8', 'uint8'\], got 'int4'"):
        torchqat.export_onnx(qat, torch.randn(1, 4), tmp_path / "m.onnx", weight_dtype="int4")


def test_small_bert_qdq_runs_in_onnxruntime(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(5)
    config = transformers.BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64, num_labels=3)
    ids = torch.randint(0, 500, (8, 32))
    mask = torch.ones_like(ids)
    mask[:, 24:] = 0
    qat = _calibrated(transformers.BertForSequenceClassification(config),
                      [{"input_ids": ids, "attention_mask": mask}])
    path = torchqat.export_onnx(qat, {"input_ids": ids, "attention_mask": mask}, tmp_path / "bert.onnx",
                                output_names=["logits"])
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") >= 18 and "MatMul" in ops
    ids2 = torch.randint(0, 500, (5, 32))
    mask2 = torch.ones_like(ids2)
    mask2[:, 20:] = 0
    theirs = torch.from_numpy(_session(path).run(None, {"input_ids": ids2.numpy(), "attention_mask": mask2.numpy()})[0])
    with torch.no_grad():
        ours = torchqat.export(qat)(input_ids=ids2, attention_mask=mask2).logits
    assert (theirs - ours).abs().max() <= 0.05 * ours.abs().max()


def _int4_weights(path):
    """{name: (integers, scales, DequantizeLinear attributes)} of the INT4 weights."""
    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    out = {}
    for n in proto.graph.node:
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None \
                and inits[n.input[0]].data_type == onnx.TensorProto.INT4:
            attrs = {a.name: a.i for a in n.attribute}
            out[n.output[0]] = (numpy_helper.to_array(inits[n.input[0]]),
                                numpy_helper.to_array(inits[n.input[1]]), attrs)
    return proto, out


def test_w4a8_resnet18_writes_int4_blocks_that_onnxruntime_runs(tmp_path):
    """Per-group int4 conv weights become INT4 initializers with blocked
    DequantizeLinear (axis 1 = input channels, block = group); their
    dequantized values are the QAT model's fake-quantized weights."""
    torch.manual_seed(0)
    qat = _calibrated(torchvision.models.resnet18(num_classes=10), [torch.randn(8, 3, 32, 32)],
                      torchqat.QConfig.w4a8())
    path = torchqat.export_onnx(qat, torch.randn(2, 3, 32, 32), tmp_path / "w4a8.onnx")
    proto, int4 = _int4_weights(path)
    assert len(int4) == 19 and [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [21]
    ints, scales, attrs = next(iter(int4.values()))
    assert attrs == {"axis": 1, "block_size": 32} and ints.min() >= -8 and ints.max() <= 7
    conv = qat.get_submodule("layer1.0.conv1")  # its weight, BN folded, as the QAT model quantizes it
    w = fake_quantized_weight(conv.weight_quantizer, effective_weight_and_bias(conv)[0].detach(), "layer1.0.conv1")
    dequantized = [torch.from_numpy(i.astype(np.float32) * np.repeat(s, 32, axis=1)) for i, s, _ in int4.values()]
    assert any(d.shape == w.shape and torch.equal(d, w) for d in dequantized)
    assert os.path.getsize(path) < 0.17 * 4 * sum(p.numel() for p in qat.parameters())
    x = torch.randn(32, 3, 32, 32)
    theirs = torch.from_numpy(_session(path).run(None, {"input0": x.numpy()})[0])
    with torch.no_grad():
        ours = torchqat.export(qat)(x)
    assert (theirs.argmax(1) == ours.argmax(1)).float().mean() >= 0.95
    assert (theirs - ours).abs().max() <= 0.05 * ours.abs().max()


def test_w4a8_bert_linear_weights_are_int4_blocks(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(5)
    config = transformers.BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64, num_labels=3)
    ids = torch.randint(0, 500, (8, 32))
    qat = _calibrated(transformers.BertForSequenceClassification(config), [{"input_ids": ids}],
                      torchqat.QConfig.w4a8())
    path = torchqat.export_onnx(qat, {"input_ids": ids}, tmp_path / "bert.onnx", output_names=["logits"])
    _, int4 = _int4_weights(path)
    assert len(int4) == 2 * 6  # q, k, v, attention output, intermediate, output per layer
    ids2 = torch.randint(0, 500, (5, 32))
    theirs = torch.from_numpy(_session(path).run(None, {"input_ids": ids2.numpy()})[0])
    with torch.no_grad():
        ours = torchqat.export(qat)(input_ids=ids2).logits
    assert (theirs - ours).abs().max() <= 0.05 * ours.abs().max()


def test_four_bit_activations_are_refused_by_name(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 2))
    qat = torchqat.prepare_qat(model, torchqat.QConfig.w4a4_lsq())
    torchqat.calibrate(qat, [torch.randn(4, 8)])
    with pytest.raises(NotImplementedError, match=r"layer '2'.*8-bit integer activations"):
        torchqat.export_onnx(qat, torch.randn(1, 8), tmp_path / "m.onnx")


def test_grouped_convs_run_in_onnxruntime_like_the_exported_model(tmp_path):
    """Grouped convs (merged runs in torchqat's exported model) are one QDQ
    Conv with its group attribute in ONNX; both compute the same network."""
    from test_export import _GroupedNet

    torch.manual_seed(0)
    qat = _calibrated(_GroupedNet(), [torch.randn(16, 3, 12, 12) for _ in range(4)])
    x = torch.randn(64, 3, 12, 12)
    path = torchqat.export_onnx(qat, x[:2], tmp_path / "grouped.onnx")
    groups = sorted(a.i for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"
                    for a in n.attribute if a.name == "group")
    assert groups == [1, 2, 4, 8, 32]
    got = torch.from_numpy(_session(path).run(None, {"input0": x.numpy()})[0])
    with torch.no_grad():
        want = torchqat.export(qat)(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0.02 * want.abs().max().item())
    assert (got.argmax(1) == want.argmax(1)).float().mean() >= 0.95
