"""QAT layers and quantizers: numerics against written-out formulas, switches,
state, Conv-BN folding, bad input."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchqat
from torchqat import QConfig, QuantSpec
from torchqat.nn import (QuantAdd, QuantAttention, QuantConv2d, QuantConvBn2d, QuantEmbedding, QuantLinear,
                         QuantMatMul, Quantizer)

INT8_W = QConfig.int8().weight
UINT8_A = QConfig.int8().activation


def per_channel_reference(w, qmin, qmax):
    """Symmetric per-output-channel fake quantization, written out."""
    amax = w.detach().reshape(w.shape[0], -1).abs().amax(1).clamp_min(torch.finfo(torch.float32).eps)
    scale = (amax / ((qmax - qmin) / 2)).reshape((-1,) + (1,) * (w.dim() - 1))
    return torch.round(w * (1.0 / scale)).clamp(qmin, qmax) * scale  # x * (1/s), as ATen rounds


def test_linear_weight_and_input_match_written_out_fake_quant():
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    q = QuantLinear.from_float(lin, INT8_W, UINT8_A, "fc")
    x = torch.randn(8, 32) * 3
    y = q(x)
    # the input: affine uint8 over [min(x, 0), max(x, 0)] (first batch sets the range)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s = (hi - lo) / 255
    zp = min(max(round(-lo / s), 0), 255)
    xq = (torch.round(x * (1.0 / s)) + zp).clamp(0, 255).sub(zp) * s
    wq = per_channel_reference(lin.weight, -127, 127)
    torch.testing.assert_close(y, F.linear(xq, wq, lin.bias), rtol=1e-5, atol=1e-5)
    assert q.weight is lin.weight  # parameters are shared, not copied


def test_per_group_conv_weight_is_grouped_along_input_channels_per_tap():
    """Groups of a conv weight run along input channels within one kernel tap
    (the channels-last im2col row the W4A8 conv multiplies); wider groups
    take the next taps."""
    conv = nn.Conv2d(8, 4, 3)
    taps = conv.weight.detach().permute(0, 2, 3, 1)  # (out, ky, kx, in)
    for group, grouped in ((8, taps), (24, taps.reshape(4, 3, 24))):
        spec = QuantSpec(bits=4, granularity="per_group", group_size=group, observer="current")
        q = QuantConv2d.from_float(conv, spec, None, "conv")
        assert q.weight_quantizer.stat_shape == (4, 72 // group)
        scale = grouped.abs().amax(-1, keepdim=True) / 7.5
        ref = (torch.round(grouped * (1.0 / scale)).clamp(-8, 7) * scale).reshape(4, 3, 3, 8).permute(0, 3, 1, 2)
        torch.testing.assert_close(q._quantize_weight(conv.weight)[0], ref)
    with pytest.raises(ValueError, match="per-group size 32 does not divide its weight rows of 72"):
        QuantConv2d.from_float(conv, spec.replace(group_size=32), None, "conv")


def test_switches_and_errors_of_a_quantizer():
    q = Quantizer(UINT8_A, name="blk.input")
    q.observer_enabled = False
    with pytest.raises(RuntimeError, match="quantizer 'blk.input' has never seen data"):
        q(torch.randn(4))
    q.observer_enabled = True
    x = torch.randn(100)
    q(x)
    lo, hi = q.min_val.clone(), q.max_val.clone()
    q.observer_enabled = False
    q(x * 10)
    assert torch.equal(q.min_val, lo) and torch.equal(q.max_val, hi)
    q.fake_quant_enabled = False
    assert torch.equal(q(x), x)


def test_lsq_quantizer_initialises_from_range_and_learns():
    spec = QuantSpec(bits=4, signed=False, symmetric=False, estimator="lsq+", observer="minmax")
    q = Quantizer(spec, name="a")
    q.fake_quant_enabled = False
    x = torch.rand(1000) * 6 - 1  # a calibration batch in [-1, 5]
    q(x)
    assert not q.initialised
    q.fake_quant_enabled = True
    y = q(x)
    assert q.initialised
    torch.testing.assert_close(q.scale.detach(), torch.tensor([(float(x.max()) - float(x.min())) / 15]),
                               rtol=1e-5, atol=0)
    y.square().sum().backward()
    assert q.scale.grad is not None and q.zero_point.grad is not None
    assert float(q.scale.grad.abs()) > 0


def test_conv_bn_eval_is_the_folded_conv():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    m = QuantConvBn2d.from_float(conv, bn, INT8_W, None, "c", relu=True).eval()
    x = torch.randn(2, 3, 8, 8)
    sigma = torch.sqrt(bn.running_var + bn.eps)
    gamma_over_sigma = bn.weight / sigma
    w_folded = per_channel_reference(conv.weight * gamma_over_sigma.reshape(-1, 1, 1, 1), -127, 127)
    b_folded = (conv.bias - bn.running_mean) * gamma_over_sigma + bn.bias
    torch.testing.assert_close(m(x), F.relu(F.conv2d(x, w_folded, b_folded, padding=1)), rtol=1e-5, atol=1e-5)


def test_conv_bn_train_uses_batch_statistics_and_updates_running_ones():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6)
    ref_conv, ref_bn = copy.deepcopy(conv), copy.deepcopy(bn)
    m = QuantConvBn2d.from_float(conv, bn, None, None, "c")  # quantizers off: Conv then BN
    x = torch.randn(4, 3, 10, 10)
    torch.testing.assert_close(m(x), ref_bn(ref_conv(x)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)
    torchqat.freeze_bn_stats(nn.Sequential(m, Quantizer(UINT8_A)))
    before = bn.running_mean.clone()
    m(x)
    assert torch.equal(bn.running_mean, before)


def test_freeze_bn_after_steps():
    conv, bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
    m = QuantConvBn2d.from_float(conv, bn, INT8_W, UINT8_A, "c", freeze_bn_after=2)
    x = torch.randn(2, 3, 4, 4)
    m(x), m(x)
    assert not m.bn_frozen
    m(x)
    assert m.bn_frozen and int(bn.num_batches_tracked) == 2


def test_matmul_add_attention_and_embedding():
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 8, 5)
    mm = QuantMatMul(UINT8_A, "mm")
    torch.testing.assert_close(mm(a, b), torch.matmul(mm.a_quantizer(a), mm.b_quantizer(b)))
    add = QuantAdd(UINT8_A, "add")
    assert add(a, a).shape == a.shape
    attn = QuantAttention(UINT8_A, "attn")
    torchqat.enable_fake_quant(nn.Sequential(attn), False)
    q, k, v = torch.randn(3, 2, 4, 7, 16).unbind(0)
    mask = torch.rand(2, 1, 7, 7) > 0.3
    mask[..., 0] = True
    for kw in (dict(attn_mask=mask), dict(is_causal=True), dict(attn_mask=torch.randn(2, 1, 7, 7))):
        torch.testing.assert_close(attn(q, k, v, **kw), F.scaled_dot_product_attention(q, k, v, **kw),
                                   rtol=1e-5, atol=1e-5)
    emb = nn.Embedding(50, 16)
    qe = QuantEmbedding.from_float(emb, INT8_W, "emb")
    idx = torch.tensor([[1, 2, 49]])
    torch.testing.assert_close(qe(idx), per_channel_reference(emb.weight, -127, 127)[idx])


@pytest.mark.parametrize("kwargs,message", [
    (dict(bits=1), r"bits must be an integer in \[2, 8\]"),
    (dict(bits=1, symmetric=False), r"bits must be an integer in \[2, 8\]"),
    (dict(granularity="per_group"), "group_size is given exactly when granularity is 'per_group'"),
    (dict(granularity="per_row"), "granularity must be one of"),
    (dict(estimator="lsq+", symmetric=True), "lsq\\+ learns a zero point: it needs symmetric=False"),
    (dict(observer="histogram", granularity="per_channel"), "histogram observer is per-tensor only"),
    (dict(fp8="e3m4"), "fp8 must be one of"),
    (dict(averaging_constant=0.0), r"averaging_constant must be in \(0, 1\]"),
])
def test_impossible_specs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantSpec(**kwargs)


@pytest.mark.parametrize("spec", [
    UINT8_A,
    QuantSpec(bits=8, signed=False, symmetric=False, observer="minmax"),
    QuantSpec(bits=4, signed=False, symmetric=False, estimator="lsq+", observer="minmax"),
    QuantSpec(bits=4, signed=True, symmetric=True, estimator="lsq", observer="minmax"),
    QuantSpec(fp8="e4m3"),
    QuantSpec(bits=8, signed=False, symmetric=False, observer="histogram"),
], ids=lambda s: s.describe() + " " + s.observer)
def test_replay_rebuilds_the_quantized_tensor_bitwise(spec):
    # Layers keep the quantizer's input and replay it in backward instead of
    # keeping the quantized copy: the replay must be bitwise the forward's.
    q = Quantizer(spec, name="x")
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(4, 1000, generator=gen) * 3
        y = q(x)
        assert torch.equal(q.replay(x)(), y)


def test_layer_gradients_with_recomputed_inputs_match_saved_ones():
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    q = QuantLinear.from_float(lin, INT8_W, UINT8_A, "fc")
    x = torch.randn(8, 5, 32, requires_grad=True)
    q(x).square().sum().backward()
    grads = x.grad.clone(), lin.weight.grad.clone()
    # the same step written out: quantized input and weight kept by autograd
    x.grad, lin.weight.grad = None, None
    q.input_quantizer.observer_enabled = False
    xq = q.input_quantizer(x)
    F.linear(xq, q._quantize_weight(lin.weight)[0], lin.bias).square().sum().backward()
    assert torch.equal(x.grad, grads[0]) and torch.equal(lin.weight.grad, grads[1])


@pytest.mark.parametrize("qconfig", [QConfig.int8(), QConfig.w4a4_lsq(), QConfig.w4a8(group_size=9)],
                         ids=["int8", "w4a4_lsq", "w4a8"])
def test_recomputation_gives_the_gradients_of_saving(qconfig, monkeypatch):
    import contextlib

    import torchqat.nn.conv_bn as conv_bn_module
    import torchqat.nn.modules as modules

    def run():
        torch.manual_seed(0)
        conv, bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        lin = nn.Linear(8 * 6 * 6, 5)
        layers = [QuantConvBn2d.from_float(conv, bn, qconfig.weight, qconfig.activation, "c", relu=True),
                  QuantConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), qconfig.weight, qconfig.activation, "d"),
                  QuantLinear.from_float(lin, qconfig.weight, qconfig.activation, "fc")]
        mm = QuantMatMul(qconfig.activation, "mm")
        x = torch.randn(4, 3, 6, 6, requires_grad=True)
        h = layers[1](layers[0](x))
        out = layers[2](h.flatten(1))
        mm(out, out.t()).square().sum().backward()
        return [x.grad] + [p.grad for m in layers for p in m.parameters() if p.grad is not None]

    recomputed = run()
    monkeypatch.setattr(modules, "recompute_saved", lambda pairs: contextlib.nullcontext())
    monkeypatch.setattr(conv_bn_module, "recompute_saved", lambda pairs: contextlib.nullcontext())
    saved = run()
    assert len(recomputed) == len(saved) > 5
    for a, b in zip(recomputed, saved):
        assert torch.equal(a, b)


def test_conv_bn_training_step_quantizes_on_the_folded_grid():
    # Training with batch statistics quantizes w on the grid of w * gamma/sigma
    # without forming the product: the result is BN(conv(x, Q(w * s)) / s), as
    # written out here, up to the float rounding of the product.
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(-1.5, 1.5)  # negative gammas too
    ref_bn = copy.deepcopy(bn)
    m = QuantConvBn2d.from_float(conv, bn, INT8_W, None, "c", relu=True)
    s = m.bn_scale().detach()  # gamma / sigma before this step updates the running variance
    w_ref = per_channel_reference(conv.weight.detach() * s.reshape(-1, 1, 1, 1), -127, 127)
    x = torch.randn(4, 3, 8, 8)
    y_ref = F.conv2d(x, w_ref, None, padding=1) / s.reshape(1, -1, 1, 1) + conv.bias.detach().reshape(1, -1, 1, 1)
    expected = F.relu(ref_bn(y_ref))
    torch.testing.assert_close(m(x), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=1e-4, atol=1e-6)
    q = m.weight_quantizer  # the range kept is that of the folded weight
    folded = conv.weight.detach() * s.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(q.max_val, folded.reshape(6, -1).amax(1), rtol=0, atol=0)
    torch.testing.assert_close(q.min_val, folded.reshape(6, -1).amin(1), rtol=0, atol=0)
