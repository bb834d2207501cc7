"""prepare_qat on torchvision ResNet / MobileNet, Hugging Face BERT and user
models: training works, every layer is accounted for, state round-trips,
switches and bad input."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchqat
from torchqat import QConfig, QuantSpec
from torchqat.nn import QuantAdd, QuantAttention, QuantConvBn2d, QuantLinear, QuantMatMul, Quantizer

torchvision = pytest.importorskip("torchvision")
transformers = pytest.importorskip("transformers")


def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def small_bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=64, num_labels=3)
    return transformers.BertForSequenceClassification(cfg)


def bert_batch(n=8, length=16):
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 500, (n, length), generator=gen)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[n // 2:, length // 2:] = 0  # padded sequences
    return dict(input_ids=ids, attention_mask=mask, labels=torch.arange(n) % 3)


def train_steps(model, step, n, lr=0.01):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(n):
        opt.zero_grad()
        loss = step(model)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def image_step(x, y):
    return lambda model: F.cross_entropy(model(x), y)


def layers_of(model, types):
    return [n for n, m in model.named_modules() if type(m) in types]


def test_resnet18_prepare_train_summary():
    float_model = resnet18()
    n_conv_linear = len(layers_of(float_model, (nn.Conv2d, nn.Linear)))
    qat = torchqat.prepare_qat(float_model, QConfig.int8())
    report = qat.torchqat_report
    assert report.mode == "torch.fx" and not report.left_in_float
    assert len(report.fused) == 20  # every conv has its BN folded
    assert len([m for m in qat.modules() if isinstance(m, QuantConvBn2d)]) == 20
    assert len([m for m in qat.modules() if isinstance(m, QuantAdd)]) == 8  # one per BasicBlock
    assert not any(isinstance(m, nn.BatchNorm2d) for n, m in qat.named_modules() if not n.endswith(".bn"))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    losses = train_steps(qat, image_step(x, y), 8)
    assert losses[-1] < 0.7 * losses[0], losses
    for q in qat.modules():
        if isinstance(q, Quantizer):
            scale, _ = q.qparams()
            assert torch.isfinite(scale).all() and (scale > 0).all(), q.name
    table = torchqat.summary(qat)
    assert len([line for line in table.splitlines() if "QuantConvBn2d" in line or "QuantLinear" in line]) \
        == n_conv_linear
    assert float_model.conv1.weight is not qat.conv1.weight  # inplace=False leaves the float model alone


def test_fake_quant_off_equals_float_model():
    float_model = resnet18().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in float_model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    qat = torchqat.prepare_qat(float_model).eval()
    torchqat.enable_fake_quant(qat, False)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(qat(x), float_model(x), rtol=1e-4, atol=1e-4)
    bert = small_bert().eval()
    batch = bert_batch()
    del batch["labels"]
    qbert = torchqat.prepare_qat(bert).eval()
    torchqat.enable_fake_quant(qbert, False)
    torch.testing.assert_close(qbert(**batch).logits, bert(**batch).logits, rtol=1e-5, atol=1e-5)


def test_state_dict_round_trip_resumes_exactly():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    qconfig = QConfig.w4a4_lsq()
    qat = torchqat.prepare_qat(resnet18(), qconfig)
    train_steps(qat, image_step(x, y), 2)
    fresh = torchqat.prepare_qat(resnet18(), qconfig)
    fresh.load_state_dict(qat.state_dict())
    a, b = copy.deepcopy(qat), fresh
    # one more training step on each, then eval outputs: bitwise equal
    train_steps(a, image_step(x, y), 1)
    train_steps(b, image_step(x, y), 1)
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


def test_per_layer_overrides_and_skips():
    qconfig = QConfig.int8().override("layer4.*", weight=QuantSpec(bits=4, granularity="per_channel",
                                                                   observer="current")).skip("fc")
    qat = torchqat.prepare_qat(resnet18(), qconfig)
    assert qat.get_submodule("layer4.0.conv1").weight_quantizer.spec.bits == 4
    assert qat.get_submodule("layer3.0.conv1").weight_quantizer.spec.bits == 8
    assert type(qat.fc) is nn.Linear
    assert ("fc", "skipped by the QConfig") in qat.torchqat_report.left_in_float
    assert "| fc " in torchqat.summary(qat)


def test_low_bit_presets_keep_first_and_last_layers_at_8_bits():
    qat = torchqat.prepare_qat(resnet18(), QConfig.w4a8())
    assert qat.conv1.weight_quantizer.spec.bits == 8 and qat.fc.weight_quantizer.spec.bits == 8
    assert qat.get_submodule("layer1.0.conv1").weight_quantizer.spec.describe() == "int4 per_group(32) sym ste"
    lsq = torchqat.prepare_qat(resnet18(), QConfig.w4a4_lsq())
    assert lsq.get_submodule("layer2.0.conv2").input_quantizer.spec.bits == 4 and lsq.fc.input_quantizer.spec.bits == 8
    assert isinstance(lsq.get_submodule("layer2.0.conv2").weight_quantizer.scale, nn.Parameter)


def test_mobilenet_v2_prepares_and_trains():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10)
    qat = torchqat.prepare_qat(model)
    assert qat.torchqat_report.mode == "torch.fx" and len(qat.torchqat_report.fused) == 52
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    losses = train_steps(qat, image_step(x, y), 3, lr=0.005)
    assert all(torch.isfinite(torch.tensor(losses)))


def test_bert_prepare_quantizes_attention_matmuls_and_trains():
    qat = torchqat.prepare_qat(small_bert(), QConfig.int8())
    names = [n for n, m in qat.named_modules() if isinstance(m, QuantMatMul)]
    assert len(names) == 4 and all("attention.self.quant_attention" in n for n in names)
    assert qat.config._attn_implementation == "torchqat"
    n_linear = len(layers_of(small_bert(), (nn.Linear,)))
    assert len([m for m in qat.modules() if isinstance(m, QuantLinear)]) == n_linear
    batch = bert_batch()
    losses = train_steps(qat, lambda m: m(**batch).loss, 10, lr=0.05)
    assert losses[-1] < 0.7 * losses[0], losses
    attn = qat.bert.encoder.layer[0].attention.self.quant_attention
    assert attn.qk.a_quantizer.observed and attn.pv.b_quantizer.observed
    table = torchqat.summary(qat)
    assert table.count("QuantMatMul") == 4


class UntraceableAttention(nn.Module):
    """Data-dependent control flow (untraceable) and a matmul on activations."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, x):
        if x.sum() > 1e9:  # torch.fx cannot trace this
            x = x * 0
        h = self.proj(x)
        return torch.matmul(h, h.transpose(-1, -2))


def test_float_matmuls_are_reported_loudly():
    with pytest.warns(UserWarning, match=r"'<root>:matmul' stays in float"):
        qat = torchqat.prepare_qat(UntraceableAttention(), example_inputs=(torch.randn(2, 4, 16),))
    assert qat.torchqat_report.mode.startswith("module swap")
    assert isinstance(qat.proj, QuantLinear)


class TraceableAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        q, k, v = self.qkv(x).unflatten(-1, (3, 1, 16)).permute(2, 0, 3, 1, 4).unbind(0)
        scores = torch.matmul(q, k.transpose(-1, -2)).softmax(-1)
        a = F.scaled_dot_product_attention(q, k, v)
        return self.out((scores @ v + a).squeeze(1)) + x


def test_fx_path_rewrites_matmuls_attention_and_adds():
    model = TraceableAttention()
    qat = torchqat.prepare_qat(model)
    kinds = sorted(type(m).__name__ for m in qat.modules()
                   if isinstance(m, (QuantMatMul, QuantAttention, QuantAdd)))
    assert kinds.count("QuantAttention") == 1 and kinds.count("QuantAdd") == 2
    assert kinds.count("QuantMatMul") == 4  # two explicit, two inside the attention
    x = torch.randn(2, 5, 16)
    torchqat.enable_fake_quant(qat, False)
    torch.testing.assert_close(qat(x), model(x), rtol=1e-5, atol=1e-5)


def test_calibrate_then_freeze():
    qat = torchqat.prepare_qat(resnet18())
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 3, 32, 32, generator=gen) for _ in range(3)]
    torchqat.calibrate(qat, batches)
    assert qat.training and all(q.fake_quant_enabled and q.observer_enabled for q in torchqat.control.quantizers(qat))
    assert all(q.observed for q in torchqat.control.quantizers(qat))
    torchqat.freeze(qat)
    lo = qat.get_submodule("layer1.0.conv1").input_quantizer.min_val.clone()
    qat(batches[0] * 5)
    assert torch.equal(qat.get_submodule("layer1.0.conv1").input_quantizer.min_val, lo)
    with pytest.raises(ValueError, match="batches is empty"):
        torchqat.calibrate(qat, [])


def test_layers_whose_weight_rows_groups_do_not_divide_get_8_bit_per_channel_weights():
    """Groups of 48 divide ResNet-18's 3x3 rows (9 x 64 .. 9 x 512) but not its
    1x1 downsample convs' (64, 128, 256): those three get per-channel int8
    weights and the report names them; the 3x3 convs keep int4 groups."""
    qat = torchqat.prepare_qat(resnet18(), QConfig.w4a8(group_size=48))
    adjusted = dict(qat.torchqat_report.adjusted)
    assert sorted(adjusted) == ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    assert adjusted["layer3.0.downsample.0"] == ("weight rows of 128 elements do not split into groups of 48: "
                                                 "per-channel 8-bit weights")
    assert "adjusted: layer2.0.downsample.0" in str(qat.torchqat_report)
    spec = qat.get_submodule("layer2.0.downsample.0").weight_quantizer.spec
    assert (spec.bits, spec.granularity, spec.group_size) == (8, "per_channel", None)
    spec = qat.get_submodule("layer2.0.conv1").weight_quantizer.spec
    assert (spec.bits, spec.granularity, spec.group_size) == (4, "per_group", 48)


def test_bad_input():
    with pytest.raises(RuntimeError, match="already prepared"):
        torchqat.prepare_qat(torchqat.prepare_qat(resnet18()))
    for fn in (torchqat.summary, torchqat.freeze, torchqat.freeze_bn_stats,
               lambda m: torchqat.calibrate(m, [torch.randn(1, 3, 32, 32)]),
               lambda m: torchqat.enable_fake_quant(m, False), lambda m: torchqat.enable_observer(m, False)):
        with pytest.raises(RuntimeError, match="needs a model prepared by torchqat.prepare_qat"):
            fn(resnet18())
    with pytest.warns(UserWarning, match=r"'layer5\.\*' matches no module name; did you mean"):
        torchqat.prepare_qat(resnet18(), QConfig.int8().skip("layer5.*"))
    with pytest.raises(TypeError, match="qconfig must be a torchqat.QConfig"):
        torchqat.prepare_qat(resnet18(), "int8")
    with pytest.raises(TypeError, match="layer pattern must be"):
        QConfig.int8().skip(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torchqat.prepare_qat(resnet18())  # a clean model prepares without warnings


def test_prepared_model_runs_under_torch_compile():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10))
    qat = torchqat.prepare_qat(model)
    x = torch.randn(4, 3, 8, 8)
    qat(x)  # ranges from one eager step, then fixed so both runs see the same qparams
    torchqat.enable_observer(qat, False)
    torchqat.freeze_bn_stats(qat)
    eager = qat(x)
    eager.square().sum().backward()
    grads = [p.grad.clone() for p in qat.parameters()]
    qat.zero_grad()
    compiled = torch.compile(qat)(x)
    compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager)
    for p, g in zip(qat.parameters(), grads):
        torch.testing.assert_close(p.grad, g)
