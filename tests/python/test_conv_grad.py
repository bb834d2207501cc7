"""Conv2d with per-tap GEMM weight gradients (torchqat/nn/conv_grad.py): the
weight gradient against a float64 reference written from the definition
(one sum per tap over the positions it reads), every gradient against
F.conv2d's, gradcheck, when the path is taken, and the module helpers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchqat
from torchqat.nn import conv_grad
from torchqat.qconfig import QConfig


def reference_weight_grad(g, x, kernel, stride, padding, dilation):
    """dL/dw[k, c, i, j] = sum over n, oh, ow of g[n, k, oh, ow] * x_padded[n, c, oh*s + i*d, ow*s + j*d]."""
    g, x = g.double(), F.pad(x.double(), (padding[1], padding[1], padding[0], padding[0]))
    out_h, out_w = g.shape[-2:]
    w = torch.zeros(g.shape[1], x.shape[1], *kernel, dtype=torch.float64)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            rows = x[:, :, i * dilation[0]::stride[0], j * dilation[1]::stride[1]][:, :, :out_h, :out_w]
            w[:, :, i, j] = torch.einsum("nkhw,nchw->kc", g, rows)
    return w


GEOMETRIES = [  # (n, c, k, h, w, kernel, stride, padding, dilation)
    (4, 8, 6, 1, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # ResNet layer4 on 28x28: only the centre tap
    (3, 5, 7, 2, 2, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 6, 4, 4, 4, (3, 3), (2, 2), (1, 1), (1, 1)),
    (2, 3, 5, 7, 5, (3, 3), (2, 2), (1, 1), (1, 1)),  # odd, non-square
    (2, 4, 3, 3, 3, (1, 1), (1, 1), (0, 0), (1, 1)),
    (2, 4, 3, 5, 5, (3, 3), (2, 2), (2, 2), (2, 2)),  # dilation, taps reading only padding
    (1, 2, 3, 3, 6, (1, 3), (1, 2), (0, 1), (1, 1)),
    (2, 3, 4, 4, 4, (5, 5), (1, 1), (2, 2), (1, 1)),
    (2, 3, 2, 9, 9, (3, 3), (1, 1), (1, 1), (1, 1)),  # 81 positions: above the threshold
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_weight_grad_by_taps_matches_the_definition(geometry, channels_last):
    n, c, k, h, w, kernel, stride, padding, dilation = geometry
    gen = torch.Generator().manual_seed(sum(geometry[:5]))
    x = torch.randn(n, c, h, w, generator=gen)
    out = F.conv2d(x, torch.zeros(k, c, *kernel), None, stride, padding, dilation)
    g = torch.randn(out.shape, generator=gen)
    if channels_last:
        x, g = x.contiguous(memory_format=torch.channels_last), g.contiguous(memory_format=torch.channels_last)
    got = conv_grad.weight_grad_by_taps(g, x, kernel, stride, padding, dilation)
    torch.testing.assert_close(got.double(), reference_weight_grad(g, x, kernel, stride, padding, dilation),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_forward_and_input_grad_by_taps_match_float64_conv(geometry):
    """Every geometry, whether or not conv2d takes the path for it: the per-tap
    forward and input gradient against float64 F.conv2d and its autograd."""
    n, c, k, h, w, kernel, stride, padding, dilation = geometry
    gen = torch.Generator().manual_seed(sum(geometry[:5]) + 1)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(k, c, *kernel, generator=gen, dtype=torch.float64)
    ref = F.conv2d(x, weight, None, stride, padding, dilation)
    g = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(conv_grad.conv2d_by_taps(x.detach(), weight, stride, padding, dilation), ref)
    torch.testing.assert_close(conv_grad.input_grad_by_taps(g, weight, x.shape, stride, padding, dilation), ref_grad)


@pytest.mark.parametrize("geometry", GEOMETRIES[:-1])
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d_output_and_gradients_match_f_conv2d(geometry, bias):
    n, c, k, h, w, kernel, stride, padding, dilation = geometry
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(n, c, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(k, c, *kernel, generator=gen)
    b = torch.randn(k, generator=gen) if bias else None
    assert conv_grad._uses_tap_gemm(x, weight.requires_grad_(), stride, padding, dilation, 1)
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight) + ((b,) if bias else ())]
    ours = conv_grad.conv2d(leaves[0], leaves[1], leaves[2] if bias else None, stride, padding, dilation)
    theirs_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    theirs = F.conv2d(theirs_leaves[0], theirs_leaves[1], theirs_leaves[2] if bias else None, stride, padding,
                      dilation)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    g = torch.randn(ours.shape, generator=gen)
    for a, b_ in zip(torch.autograd.grad(ours, leaves, g), torch.autograd.grad(theirs, theirs_leaves, g)):
        torch.testing.assert_close(a, b_, rtol=1e-5, atol=1e-5)


def test_conv2d_gradcheck():
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: conv_grad.conv2d(x, w, b, 2, 1), (x, w, b))
    assert torch.autograd.gradcheck(lambda w: conv_grad.conv2d(x.detach(), w, None, 1, (2, 1), (2, 1)), (w,))


def test_the_path_is_taken_only_where_it_helps():
    x = torch.randn(2, 8, 4, 4)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    uses = conv_grad._uses_tap_gemm
    assert uses(x, w, 1, 1, 1, 1)  # 16 positions
    assert not uses(torch.randn(2, 8, 5, 5), w, 1, 1, 1, 1)  # 25 positions: oneDNN's kernel is faster
    assert not uses(x, torch.randn(8, 4, 3, 3, requires_grad=True), 1, 1, 1, 2)  # groups
    assert not uses(x, w, 1, "same", 1, 1)
    assert not uses(x, w.detach(), 1, 1, 1, 1)  # no weight gradient wanted
    with torch.no_grad():
        assert not uses(x, w, 1, 1, 1, 1)


def test_fast_small_map_convs_keeps_the_model_and_its_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1, padding_mode="reflect"),
                          nn.Conv2d(8, 4, 3, 1, 1, groups=2), nn.Flatten(), nn.Linear(4 * 4, 2))
    x = torch.randn(5, 3, 8, 8)
    keys = list(model.state_dict())
    expected = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    with torchqat.nn.fast_small_map_convs(model):
        assert type(model[2]) is not nn.Conv2d and isinstance(model[2], nn.Conv2d)
        got = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    assert all(type(m) is nn.Conv2d for m in (model[0], model[2], model[3]))
    assert list(model.state_dict()) == keys
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_qat_conv_weight_gradient_is_unchanged():
    """QuantConv2d trains through conv2d: the same gradients as F.conv2d on the
    fake-quantized operands."""
    torch.manual_seed(1)
    float_model = nn.Sequential(nn.Conv2d(4, 6, 3, 1, 1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4, 3))
    x = torch.randn(8, 4, 2, 2)
    qat = torchqat.prepare_qat(float_model, QConfig.int8(), example_inputs=(x,))
    torchqat.calibrate(qat, [x])
    conv = next(m for m in qat.modules() if isinstance(m, torchqat.nn.QuantConv2d))
    assert conv_grad._uses_tap_gemm(x, conv.weight, conv.stride, conv.padding, conv.dilation, conv.groups)
    qat.eval()  # fixed quantization parameters, so both passes quantize alike
    ours = torch.autograd.grad(qat(x).square().sum(), conv.weight)[0]
    orig = type(conv)._conv_forward
    try:
        type(conv)._conv_forward = nn.Conv2d._conv_forward
        theirs = torch.autograd.grad(qat(x).square().sum(), conv.weight)[0]
    finally:
        type(conv)._conv_forward = orig
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)  # float32 sums in another order


@pytest.mark.parametrize("preset", ["int8", "w4a8", "w4a4_lsq", "fp8"])
def test_qat_convs_keep_channels_last(preset):
    """Quantizers hand channels-last activations and weights back channels-last
    (the same values as on NCHW tensors), so the QAT convs keep oneDNN's
    channels-last kernels; outputs and gradients match the NCHW model's."""
    torch.manual_seed(2)
    float_model = nn.Sequential(nn.Conv2d(8, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 8, 3, 2, 1),
                                nn.ReLU(), nn.Flatten(), nn.Linear(8 * 9, 3))
    x = torch.randn(6, 8, 6, 6)
    nchw = torchqat.prepare_qat(float_model, getattr(QConfig, preset)(), example_inputs=(x,))
    torchqat.calibrate(nchw, [x])
    cl = torchqat.prepare_qat(float_model, getattr(QConfig, preset)(), example_inputs=(x,))
    cl.load_state_dict(nchw.state_dict())
    cl.to(memory_format=torch.channels_last)
    layouts = []
    for m in cl.modules():
        if isinstance(m, torchqat.nn.Quantizer):
            m.register_forward_hook(lambda mod, inp, out: layouts.append(
                out.dim() != 4 or out.is_contiguous() == inp[0].is_contiguous()))
    for model in (nchw, cl):
        model.train()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out_nchw, out_cl = nchw(x), cl(x_cl)
    assert layouts and all(layouts)
    torch.testing.assert_close(out_cl, out_nchw, rtol=1e-4, atol=1e-4)
    g_nchw = torch.autograd.grad(out_nchw.square().sum(), [p for p in nchw.parameters()], allow_unused=True)
    g_cl = torch.autograd.grad(out_cl.square().sum(), [p for p in cl.parameters()], allow_unused=True)
    for a, b in zip(g_cl, g_nchw):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
