"""torchqat.export: the exported model computes what the QAT model computes
(eval, observers off) on integer kernels; integers equal the QAT model's
exactly where the math is the same."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import torchqat
from torchqat.deploy.layers import (ClampUint8, FloatWeightLayer, Int4Conv2d, Int4Embedding, Int4Linear,
                                    Int8Conv2d, Int8DepthwiseConv2d, Int8GroupedConv2d, Int8Linear, MaxPoolUint8,
                                    QuantizedAdd)


def _trained_qat(model, qconfig, inputs, steps=3, lr=0.01):
    """prepare_qat, a few SGD steps, then eval with the ranges frozen."""
    qat = torchqat.prepare_qat(model, qconfig)
    opt = torch.optim.SGD(qat.parameters(), lr=lr)
    for x in inputs[:steps]:
        loss = qat(x).float().logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    qat.eval()
    torchqat.enable_observer(qat, False)
    return qat


class _ConvNet(nn.Module):
    """Conv-BN-ReLU -> Conv-BN-ReLU -> residual add -> Linear -> ReLU -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc1, self.fc2 = nn.Linear(32 * 4 * 4, 64), nn.Linear(64, 10)

    def forward(self, x):
        a = F.relu(self.bn1(self.conv1(x)))
        b = F.relu(self.bn2(self.conv2(a)))
        y = F.max_pool2d(a + b, 2)
        return self.fc2(F.relu(self.fc1(y.flatten(1))))


def _layer_io(model, names, *args):
    """{name: (input, output)} of the named submodules in one forward (copies:
    an in-place activation after a layer, MobileNet's ReLU6, would change them)."""
    seen, hooks = {}, []
    for name in names:
        hooks.append(model.get_submodule(name).register_forward_hook(
            lambda m, a, o, name=name: seen.__setitem__(name, (a[0].clone(), o.clone()))))
    with torch.no_grad():
        out = model(*args)
    for h in hooks:
        h.remove()
    return seen, out


@pytest.mark.parametrize("seed", range(4))
def test_resnet18_every_integer_layer_equals_its_qat_layer(seed):
    """Prepare-vs-export, layer by layer: each exported integer layer, fed the
    QAT layer's own input, gives the QAT layer's output up to float rounding
    (float hand-over) or its consumer's integers up to a rounding tie (uint8
    hand-over)."""
    torch.manual_seed(seed)
    inputs = [torch.randn(8, 3, 32, 32) for _ in range(4)]
    qat = _trained_qat(torchvision.models.resnet18(num_classes=10), torchqat.QConfig.int8(), inputs)
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    assert report.count("int8 conv") == 20 and report.count("int8 GEMM") == 1
    assert report.count("add of quantized") == 8
    assert not any(isinstance(m, nn.BatchNorm2d) for m in exported.modules())  # folded: not shipped
    # Inside every basic block: conv1 -> conv2 and conv2 -> add hand over uint8.
    assert len(report.chained) >= 16
    _assert_integer_layers_equal_qat(qat, exported, torch.randn(16, 3, 32, 32))


def _assert_integer_layers_equal_qat(qat, exported, x):
    """Each exported integer layer, fed the QAT layer's own input, gives the
    QAT layer's output up to float rounding (float hand-over) or its
    consumer's integers up to a rounding tie (uint8 hand-over); end to end
    the decisions agree."""
    integer = (Int8Conv2d, Int8DepthwiseConv2d, Int8GroupedConv2d, Int8Linear, Int4Conv2d)
    names = [n for n, m in exported.named_modules() if isinstance(m, integer)]
    qat_io, qat_out = _layer_io(qat, names, x)
    ties = total = 0
    for name in names:
        layer, (x_in, y_ref) = exported.get_submodule(name), qat_io[name]
        handed_over, was_quantized = layer.out_act, layer.input_quantized
        layer.input_quantized = False
        with torch.no_grad():
            if handed_over is None:
                torch.testing.assert_close(layer(x_in), y_ref, rtol=1e-4, atol=1e-5 * y_ref.abs().max().item())
            else:
                q = torch.round(y_ref / handed_over.scale) + handed_over.zero_point  # y_ref is on no grid: quantize
                q = q.clamp(handed_over.zero_point if layer.relu else 0, 255)
                diff = (layer(x_in).float() - q).abs()
                assert diff.max() <= 1, name
                ties, total = ties + int((diff > 0).sum()), total + diff.numel()
        layer.input_quantized = was_quantized
    assert ties <= 1e-3 * total, f"{ties} of {total} requantized values one step apart"
    # End to end the rare ties propagate, but the decisions agree.
    with torch.no_grad():
        got = exported(x)
    assert (got.argmax(1) == qat_out.argmax(1)).float().mean() >= 0.9


def test_mobilenet_v2_depthwise_convs_run_the_integer_kernel_and_equal_the_qat_layers():
    torch.manual_seed(0)
    inputs = [torch.randn(8, 3, 32, 32) for _ in range(4)]
    qat = _trained_qat(torchvision.models.mobilenet_v2(num_classes=10), torchqat.QConfig.int8(), inputs)
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    assert report.count("int8 depthwise conv") == 17 and report.count("int8 conv") == 35
    assert "float on the quantized grid" not in str(report)
    # Every ReLU6 but the last (before the float average pool) clamps uint8 integers.
    relu6 = [m for m in exported.modules() if isinstance(m, (nn.ReLU6, ClampUint8))]
    assert len(relu6) == 35 and sum(isinstance(m, ClampUint8) for m in relu6) == 34
    _assert_integer_layers_equal_qat(qat, exported, torch.randn(16, 3, 32, 32))


class _GroupedNet(nn.Module):
    """Grouped convs: 4 groups of 8 outputs (stride 2, BN, ReLU), 8 of 4
    (dilated, no bias), a depthwise conv with a channel multiplier of 2 (32
    groups of 2 outputs), 2 groups of 32 outputs; the small groups run merged."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.g4, self.bn = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=4, bias=False), nn.BatchNorm2d(32)
        self.g8 = nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=8, bias=False)
        self.dw2 = nn.Conv2d(32, 64, 3, padding=1, groups=32)
        self.g2 = nn.Conv2d(64, 64, 1, groups=2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.bn(self.g4(x)))
        x = F.relu(self.dw2(F.relu(self.g8(x))))
        return self.fc(self.g2(x).mean((2, 3)))


@pytest.mark.parametrize("seed", range(3))
def test_grouped_convs_run_the_int8_gemm_per_group_and_equal_the_qat_layers(seed, tmp_path):
    torch.manual_seed(seed)
    inputs = [torch.randn(8, 3, 12, 12) for _ in range(4)]
    qat = _trained_qat(_GroupedNet(), torchqat.QConfig.int8(), inputs)
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    assert report.count("int8 grouped conv") == 4 and "float on the quantized grid" not in str(report)
    grouped = {n: m for n, m in exported.named_modules() if isinstance(m, Int8GroupedConv2d)}
    assert {n: (m.groups, m.merged) for n, m in grouped.items()} == {"g4": (4, 2), "g8": (8, 4), "dw2": (32, 8),
                                                                     "g2": (2, 1)}
    assert all(grouped[n].input_quantized for n in ("g8", "dw2", "g2"))  # uint8 hand-overs
    _assert_integer_layers_equal_qat(qat, exported, torch.randn(16, 3, 12, 12))
    # The TorchScript file runs the per-group loop as the eager model does.
    x = torch.randn(4, 3, 12, 12)
    torchqat.save(exported, tmp_path / "grouped.tqat", x)
    with torch.no_grad():
        assert torch.equal(torchqat.load(tmp_path / "grouped.tqat")(x), exported(x))


def test_w4a8_grouped_convs_keep_8_bit_weights_and_run_the_int8_gemm():
    """Even where int4 groups would fit (g2: 32 input channels a group), a
    grouped conv gets per-channel int8 weights under QConfig.w4a8: only the
    INT8 GEMM deploys grouped convs."""
    torch.manual_seed(0)
    qat = _trained_qat(_GroupedNet(), torchqat.QConfig.w4a8(), [torch.randn(8, 3, 12, 12) for _ in range(3)])
    adjusted = dict(qat.torchqat_report.adjusted)
    assert adjusted["g2"] == "a grouped (2 groups) conv: the int4-group kernels take groups=1: per-channel 8-bit weights"
    assert sorted(adjusted) == ["dw2", "g2", "g4", "g8"]
    report = torchqat.export(qat).torchqat_export_report
    assert report.count("int8 grouped conv") == 4 and "float on the quantized grid" not in str(report)


def test_mobilenet_v2_w4a8_runs_integer_kernels_where_int4_groups_do_not_fit():
    """QConfig.w4a8 on MobileNetV2: the depthwise convs, and layers whose weight
    rows groups of 32 do not divide (1x1 convs over 16 or 24 channels, 3x3 ones
    over 144 input elements), get per-channel int8 weights, reported by
    prepare_qat, and deploy on the INT8 kernels; the rest on W4A8."""
    torch.manual_seed(0)
    inputs = [torch.randn(8, 3, 32, 32) for _ in range(4)]
    qat = _trained_qat(torchvision.models.mobilenet_v2(num_classes=10), torchqat.QConfig.w4a8(), inputs)
    adjusted = dict(qat.torchqat_report.adjusted)
    depthwise = [n for n, m in qat.named_modules() if getattr(m, "groups", 1) > 1]
    assert len(depthwise) == 17 and set(depthwise) <= set(adjusted)
    assert adjusted["features.1.conv.0.0"] == ("a depthwise conv: the int4-group kernels take groups=1: "
                                               "per-channel 8-bit weights")
    assert adjusted["features.2.conv.0.0"] == ("weight rows of 16 elements do not split into groups of 32: "
                                               "per-channel 8-bit weights")
    for name, _ in adjusted.items():
        spec = qat.get_submodule(name).weight_quantizer.spec
        assert spec.bits == 8 and spec.granularity == "per_channel"
    grouped = [n for n, m in qat.named_modules()
               if isinstance(m, torchqat.nn.QuantConv2d) and m.weight_quantizer.spec.granularity == "per_group"]
    assert grouped and all(n not in adjusted for n in grouped)
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    assert report.count("int8 depthwise conv") == 17 and report.count("w4a8 conv") == len(grouped)
    assert "float on the quantized grid" not in str(report)
    _assert_integer_layers_equal_qat(qat, exported, torch.randn(16, 3, 32, 32))


def test_integer_accumulators_and_requantized_outputs_equal_the_qat_layers():
    torch.manual_seed(0)
    inputs = [torch.randn(8, 3, 8, 8) for _ in range(3)]
    qat = _trained_qat(_ConvNet(), torchqat.QConfig.int8(), inputs)
    exported = torchqat.export(qat)
    conv1, conv2 = exported.get_submodule("conv1"), exported.get_submodule("conv2")
    assert isinstance(conv1, Int8Conv2d) and conv1.out_act is not None and conv2.input_quantized
    x = torch.randn(32, 3, 8, 8)
    with torch.no_grad():
        # The uint8 input equals the integers of the QAT layer's fake-quantized input.
        q_in = qat.get_submodule("conv1").input_quantizer
        scale, zero = q_in.qparams()
        ints = torch.round(q_in(x) / scale) + zero
        xq = torch.ops.torchqat.quantize_uint8(x, conv1.in_scale, conv1.in_zero_point, 0, 255)
        assert torch.equal(xq.float(), ints)
        # The int32 accumulator equals the float64 sum over the QAT layer's integers.
        ones = torch.ones(32)
        acc = torch.ops.torchqat.conv2d_int8(xq, conv1.in_zero, conv1.packed, conv1.col_sums, ones, None, [3, 3],
                                             [1, 1], [1, 1], [1, 1])
        qat_conv = qat.get_submodule("conv1")
        w_folded = qat_conv.weight * qat_conv.bn_scale().reshape(-1, 1, 1, 1)
        w_scale, _ = qat_conv.weight_quantizer.qparams()
        w_ints = torch.round(qat_conv.weight_quantizer(w_folded) / w_scale.reshape(-1, 1, 1, 1))
        acc_ref = F.conv2d(ints.double() - zero.double(), w_ints.double(), padding=1)
        assert torch.equal(acc.double(), acc_ref)
        # conv1 hands conv2 uint8: equal to the integers conv2's quantizer makes
        # of the QAT conv1's float output, but where the float accumulation of
        # the QAT model rounds a tie the other way (at most one step).
        handed = conv1(x)
        q2 = qat.get_submodule("conv2").input_quantizer
        s2, z2 = q2.qparams()
        qat_ints = torch.round(q2(qat_conv(x)) / s2) + z2
        diff = (handed.float() - qat_ints).abs()
        assert diff.max() <= 1 and (diff == 0).float().mean() >= 0.999


@pytest.mark.parametrize("preset", ["w4a8", "w4a4_lsq", "fp8"])
def test_low_bit_presets_export_to_the_qat_numbers(preset):
    torch.manual_seed(1)
    inputs = [torch.randn(8, 3, 8, 8) for _ in range(3)]
    qat = _trained_qat(_ConvNet(), getattr(torchqat.QConfig, preset)(), inputs)
    exported = torchqat.export(qat)
    kinds = dict(exported.torchqat_export_report.layers)
    with torch.no_grad():
        x = torch.randn(16, 3, 8, 8)
        ref, got = qat(x), exported(x)
    assert (got - ref).abs().max() <= 1e-3 * ref.abs().max()
    if preset == "w4a8":  # per-group int4 weights on uint8 inputs run the W4A8 kernels
        fc1, conv2 = exported.get_submodule("fc1"), exported.get_submodule("conv2")
        assert isinstance(fc1, Int4Linear) and fc1.integer_input, kinds
        assert isinstance(conv2, Int4Conv2d) and conv2.input_quantized, kinds  # uint8 from the INT8 stem
    if preset == "w4a4_lsq":  # 4-bit per-channel weights and activations are integers for the INT8 GEMM
        assert isinstance(exported.get_submodule("conv2"), Int8Conv2d), kinds
    if preset == "fp8":
        assert all(isinstance(exported.get_submodule(n), FloatWeightLayer) for n in ("conv1", "fc1")), kinds


@pytest.mark.parametrize("seed", range(2))
def test_resnet18_w4a8_convs_run_the_w4a8_kernel_and_equal_the_qat_layers(seed):
    """Every conv but the 8-bit stem runs the W4A8 conv, on uint8 handed over
    by the layer before; each equals its QAT layer as the INT8 layers do."""
    torch.manual_seed(seed)
    inputs = [torch.randn(8, 3, 32, 32) for _ in range(4)]
    qat = _trained_qat(torchvision.models.resnet18(num_classes=10), torchqat.QConfig.w4a8(), inputs)
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    assert report.count("w4a8 conv") == 19 and report.count("int8 conv") == 1, report
    w4a8 = [m for m in exported.modules() if isinstance(m, Int4Conv2d)]
    # Each hands over uint8 too: conv1 -> conv2, conv2 and the downsample -> the residual add.
    assert all(m.input_quantized and m.out_act is not None for m in w4a8)
    _assert_integer_layers_equal_qat(qat, exported, torch.randn(16, 3, 32, 32))


def test_linear_chain_hands_over_uint8():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
    inputs = [torch.randn(16, 32) for _ in range(3)]
    qat = _trained_qat(model, torchqat.QConfig.int8(), inputs)
    exported = torchqat.export(qat)
    first, middle = exported.get_submodule("0"), exported.get_submodule("2")
    assert isinstance(first, Int8Linear) and first.out_act is not None and middle.input_quantized
    with torch.no_grad():
        x = torch.randn(64, 32)
        assert (exported(x) - qat(x)).abs().max() <= 1e-3 * qat(x).abs().max()


def test_w4a8_linears_take_uint8_from_the_int8_layer_before_them():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128),
                          nn.ReLU(), nn.Linear(128, 5))
    inputs = [torch.randn(16, 64) for _ in range(3)]
    qat = _trained_qat(model, torchqat.QConfig.w4a8(), inputs)
    exported = torchqat.export(qat)
    first, second, third = (exported.get_submodule(n) for n in ("0", "2", "4"))
    assert isinstance(first, Int8Linear) and first.out_act is not None  # first layer kept at 8 bits
    assert isinstance(second, Int4Linear) and second.integer_input and second.input_quantized
    assert isinstance(third, Int4Linear) and third.integer_input and not third.input_quantized
    with torch.no_grad():
        x = torch.randn(64, 64)
        # The W4A8 layer's uint8 input equals the integers of the QAT layer's fake-quantized input.
        q_in = qat.get_submodule("4").input_quantizer
        scale, zero = q_in.qparams()
        h = _layer_io(qat, ["4"], x)[0]["4"][0]
        ints = torch.round(q_in(h) / scale) + zero
        assert torch.equal(torch.ops.torchqat.quantize_uint8(h, third.in_scale, third.in_zero_point, 0, 255).float(),
                           ints)
        assert (exported(x) - qat(x)).abs().max() <= 1e-3 * qat(x).abs().max()


@pytest.mark.parametrize("seed", range(3))
def test_residual_adds_take_uint8_fuse_the_relu_and_equal_the_qat_adds(seed):
    """Each exported add of ResNet-18, fed the QAT add's own operands, gives
    relu(QAT add) exactly: in float where it hands over float, as the integers
    quantize_uint8 gives it where it hands over uint8."""
    torch.manual_seed(seed)
    qat = _trained_qat(torchvision.models.resnet18(num_classes=10), torchqat.QConfig.int8(),
                       [torch.randn(4, 3, 32, 32) for _ in range(2)])
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    adds = [n for n, m in exported.named_modules() if isinstance(m, QuantizedAdd)]
    assert len(adds) == 8 and sorted(report.fused_relu) == sorted(adds)
    # conv1 -> conv2 -> add and downsample -> add inside the blocks; each add but the last
    # feeds the next block's conv1 (and downsample) and add as uint8; the stem conv feeds
    # layer1.0's conv1 and add through the max pool, on uint8.
    assert len(report.chained) == 8 + 8 + 3 + 7 * 2 + 2
    assert isinstance(exported.maxpool, MaxPoolUint8)
    operands = {}
    hooks = [qat.get_submodule(n).register_forward_hook(
        lambda m, a, o, n=n: operands.__setitem__(n, (a[0].clone(), a[1].clone()))) for n in adds]
    with torch.no_grad():
        qat(torch.randn(8, 3, 32, 32))
    for h in hooks:
        h.remove()
    for name in adds:
        add, (a, b) = exported.get_submodule(name), operands[name]
        assert add.integer and add.relu and add.a_quantized
        with torch.no_grad():
            want = F.relu(qat.get_submodule(name)(a, b))
            flags = add.a_quantized, add.b_quantized
            add.a_quantized = add.b_quantized = False
            got = add(a, b)
            add.a_quantized, add.b_quantized = flags
        if add.out_act is None:
            assert name == "layer4.1.add" and got.dtype == torch.float32
            assert torch.equal(got, want), name
        else:
            grid = add.out_act
            ints = torch.ops.torchqat.quantize_uint8(want, torch.tensor([grid.scale]),
                                                     torch.tensor([grid.zero_point]), grid.qmin, grid.qmax)
            assert got.dtype == torch.uint8 and torch.equal(got, ints), name


def test_export_refuses_a_quantizer_that_never_saw_data():
    qat = torchqat.prepare_qat(_ConvNet(), torchqat.QConfig.int8())
    with pytest.raises(RuntimeError, match=r"layer 'conv1'.*never saw data.*calibrate"):
        torchqat.export(qat)
    with pytest.raises(RuntimeError, match="prepared by torchqat.prepare_qat"):
        torchqat.export(_ConvNet())


def test_export_leaves_the_qat_model_alone():
    torch.manual_seed(4)
    qat = _trained_qat(_ConvNet(), torchqat.QConfig.int8(), [torch.randn(4, 3, 8, 8) for _ in range(2)])
    before = {k: v.clone() for k, v in qat.state_dict().items() if isinstance(v, torch.Tensor)}
    torchqat.export(qat)
    after = qat.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert torchqat.nn.QuantLinear in {type(m) for m in qat.modules()}


def test_int4_embedding_table_equals_the_qat_table():
    """Per-group 4-bit tables (w4a8) are stored two entries per byte; rows
    looked up give the QAT layer's fake-quantized rows bit for bit."""
    torch.manual_seed(6)
    for signed, zero in ((True, False), (False, True)):
        spec = torchqat.QuantSpec(bits=4, signed=signed, symmetric=not zero, granularity="per_group", group_size=16,
                                  observer="current")
        qconfig = torchqat.QConfig.int8().override(nn.Embedding, weight=spec)
        qat = torchqat.prepare_qat(nn.Sequential(nn.Embedding(50, 32)), qconfig)
        ids = torch.randint(0, 50, (3, 7))
        torchqat.calibrate(qat, [ids])
        qat.eval()
        torchqat.freeze(qat)
        exported = torchqat.export(qat)
        table = exported.get_submodule("0")
        assert isinstance(table, Int4Embedding) and table.packed.shape == (50, 16), exported.torchqat_export_report
        assert (table.zero is not None) == zero
        with torch.no_grad():
            assert torch.equal(exported(ids), qat(ids))


def test_bert_export_equals_qat_eval():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(5)
    config = transformers.BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64, num_labels=3)
    model = transformers.BertForSequenceClassification(config)
    qat = torchqat.prepare_qat(model, torchqat.QConfig.int8())
    ids = torch.randint(0, 500, (8, 32))
    mask = torch.ones_like(ids)
    mask[:, 24:] = 0
    torchqat.calibrate(qat, [{"input_ids": ids, "attention_mask": mask}])
    qat.eval()
    torchqat.enable_observer(qat, False)
    exported = torchqat.export(qat)
    report = exported.torchqat_export_report
    assert report.count("int8 GEMM") == 2 * 6 + 2  # Q, K, V, out, FFN in/out per layer; pooler; classifier
    assert report.count("matmul of quantized operands") == 2 * 2
    with torch.no_grad():
        ref = qat(input_ids=ids, attention_mask=mask).logits
        got = exported(input_ids=ids, attention_mask=mask).logits
    assert (got - ref).abs().max() <= 1e-3 * ref.abs().max()
