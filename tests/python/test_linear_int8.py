"""The INT8 Linear ops of the exported model: exact against an int64
reference in torch, every kernel variant, epilogues, shapes, bad input."""

import pytest
import torch
import torch.nn.functional as F

import torchqat  # noqa: F401  (registers the ops)

SIZES = [1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 100, 257]


def problem(m, n, k, seed=0, extreme=False):
    gen = torch.Generator().manual_seed(seed)
    if extreme:
        x = torch.full((m, k), 255, dtype=torch.uint8)
        w = torch.full((n, k), -128, dtype=torch.int8)
    else:
        x = torch.randint(0, 256, (m, k), generator=gen, dtype=torch.uint8)
        w = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
    multiplier = torch.rand(n, generator=gen) * 1e-3 + 1e-5
    bias = torch.randn(n, generator=gen)
    return x, w, multiplier, bias


def reference(x, x_zero, w, multiplier, bias, out_scale=None, out_zero=None, relu=False):
    acc = (x.long() - x_zero) @ w.long().t()
    v = acc.float() * multiplier
    if bias is not None:
        v = v + bias
    if out_scale is None:
        return v.clamp_min(0) if relu else v
    q = torch.round(v * torch.tensor(1.0 / out_scale, dtype=torch.float32)) + out_zero
    return q.clamp(out_zero if relu else 0, 255).to(torch.uint8)


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_matches_int64_reference_on_odd_shapes(isa):
    if isa not in torchqat._C.supported_isas():
        pytest.skip(f"this CPU cannot run the {isa} kernels; this parametrisation did not run")
    before = torchqat._C.active_isa()
    torchqat._C.set_isa(isa)
    try:
        for m in SIZES:
            for n in SIZES[::2] + [257]:
                for k in (1, 7, 16, 33, 257):
                    x, w, mult, bias = problem(m, n, k, seed=m * 1000 + n + k, extreme=(m + n + k) % 7 == 0)
                    packed, sums = torch.ops.torchqat.pack_linear_int8(w)
                    for x_zero in (0, 131):
                        got = torch.ops.torchqat.linear_int8(x, x_zero, packed, sums, mult, bias)
                        assert torch.equal(got, reference(x, x_zero, w, mult, bias)), (m, n, k)
                        got = torch.ops.torchqat.linear_int8(x, x_zero, packed, sums, mult, None, 0.05, 120,
                                                             relu=True)
                        assert torch.equal(got, reference(x, x_zero, w, mult, None, 0.05, 120, relu=True))
    finally:
        torchqat._C.set_isa(before)


def test_batched_input_and_threads():
    x, w, mult, bias = problem(2 * 3 * 50, 96, 128)
    packed, sums = torch.ops.torchqat.pack_linear_int8(w)
    x3 = x.reshape(2, 150, 128)
    before = torch.get_num_threads()
    outs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        outs.append(torch.ops.torchqat.linear_int8(x3, 7, packed, sums, mult, bias, relu=True))
    torch.set_num_threads(before)
    assert outs[0].shape == (2, 150, 96)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0].reshape(300, 96), reference(x, 7, w, mult, bias, relu=True))


def test_meta_and_opcheck():
    x, w, mult, bias = problem(5, 20, 40)
    packed, sums = torch.ops.torchqat.pack_linear_int8(w)
    out = torch.ops.torchqat.linear_int8(x.to("meta"), 3, packed.to("meta"), sums.to("meta"), mult.to("meta"))
    assert out.shape == (5, 20) and out.dtype == torch.float32
    torch.library.opcheck(torch.ops.torchqat.linear_int8.default, (x, 3, packed, sums, mult, bias, 0.1, 10, False))
    torch.library.opcheck(torch.ops.torchqat.pack_linear_int8.default, (w,))


def test_bad_input_is_named():
    x, w, mult, bias = problem(4, 16, 32)
    packed, sums = torch.ops.torchqat.pack_linear_int8(w)
    op = torch.ops.torchqat.linear_int8
    with pytest.raises(RuntimeError, match="x must be a uint8 CPU tensor"):
        op(x.float(), 0, packed, sums, mult)
    with pytest.raises(RuntimeError, match="x has 31 features but the weights were packed for 32"):
        op(x[:, :31], 0, packed, sums, mult)
    stale = packed.clone()
    stale[2] = 1
    with pytest.raises(RuntimeError, match="packing version 1; this build reads 2"):
        op(x, 0, stale, sums, mult)
    with pytest.raises(RuntimeError, match="does not come from pack_linear_int8"):
        op(x, 0, torch.zeros_like(packed), sums, mult)
    with pytest.raises(RuntimeError, match=r"x_zero_point must be in \[0, 255\]"):
        op(x, 256, packed, sums, mult)
    with pytest.raises(RuntimeError, match="multiplier must be a contiguous float32 tensor of 16 values"):
        op(x, 0, packed, sums, mult[:8])
    with pytest.raises(RuntimeError, match="give out_scale and out_zero_point together"):
        op(x, 0, packed, sums, mult, None, 0.1)
    with pytest.raises(RuntimeError, match="out_scale must be finite and > 0"):
        op(x, 0, packed, sums, mult, None, 0.0, 3)
    with pytest.raises(RuntimeError, match="weight must be a 2-D int8 tensor"):
        torch.ops.torchqat.pack_linear_int8(w.float())


# Small inputs take one im2col + the panel-split GEMM; 2x5x24x26 (1248 rows)
# the per-task im2col tiles; 1x1 stride 1 no im2col at all; 7x7 and 5x5 kernels
# wider than the padded borders (the partial kernel rows im2col copies).
@pytest.mark.parametrize("stride,padding,dilation,hw,kernel", [
    (1, 1, 1, (9, 11), 3), (2, 0, 1, (9, 11), 3), (1, 2, 2, (9, 11), 3), (2, 1, 1, (9, 11), 3),
    (1, 1, 1, (24, 26), 3), (1, 1, 2, (24, 26), 3), (1, 0, 1, (24, 26), 1), (2, 0, 1, (24, 26), 1),
    (1, 0, 1, (5, 3), 1), (2, 3, 1, (12, 10), 7), (1, 3, 1, (5, 3), 7), (1, 2, 1, (9, 3), 5)])
def test_conv2d_int8_matches_int64_reference(stride, padding, dilation, hw, kernel):
    gen = torch.Generator().manual_seed(stride * 10 + padding)
    x = torch.randint(0, 256, (2, 5) + hw, generator=gen, dtype=torch.uint8)
    w = torch.randint(-128, 128, (7, 5, kernel, kernel), generator=gen, dtype=torch.int8)
    mult = torch.rand(7, generator=gen) * 1e-3
    bias = torch.randn(7, generator=gen)
    packed, sums = torch.ops.torchqat.pack_linear_int8(w.permute(0, 2, 3, 1).flatten(1))
    x_zero = 17
    acc = F.conv2d(x.double() - x_zero, w.double(), stride=stride, padding=padding, dilation=dilation)
    expected = acc.float() * mult.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
    ks = [kernel, kernel]
    got = torch.ops.torchqat.conv2d_int8(x, x_zero, packed, sums, mult, bias, ks, [stride] * 2, [padding] * 2,
                                         [dilation] * 2)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, expected)
    q = torch.ops.torchqat.conv2d_int8(x, x_zero, packed, sums, mult, bias, ks, [stride] * 2, [padding] * 2,
                                       [dilation] * 2, 0.05, 100, True)
    # A channels-last input gives the same results.
    cl = torch.ops.torchqat.conv2d_int8(x.contiguous(memory_format=torch.channels_last), x_zero, packed, sums, mult,
                                        bias, ks, [stride] * 2, [padding] * 2, [dilation] * 2)
    assert torch.equal(cl, expected)
    ref_q = (torch.round(expected * torch.tensor(1 / 0.05)) + 100).clamp(100, 255).to(torch.uint8)
    assert torch.equal(q, ref_q)
    torch.library.opcheck(torch.ops.torchqat.conv2d_int8.default,
                          (x, x_zero, packed, sums, mult, bias, ks, [stride] * 2, [padding] * 2, [dilation] * 2))
    with pytest.raises(RuntimeError, match="kernel does not fit"):
        torch.ops.torchqat.conv2d_int8(x[:, :, :1, :1], x_zero, packed, sums, mult, bias, [3, 3], [1, 1], [0, 0],
                                       [1, 1])


# Grouped: against F.conv2d in float64 on the same integers, with groups run
# one by one (8 outputs a group, merged 2), merged 4 and 8 at a time, and
# 1248 rows (several row tiles per run, over threads).
@pytest.mark.parametrize("channels,out,groups,merged,kernel,stride,padding,dilation,hw", [
    (8, 64, 2, 1, 3, 1, 1, 1, (9, 11)), (16, 32, 4, 2, 3, 2, 1, 1, (9, 11)), (32, 32, 8, 4, 3, 1, 2, 2, (9, 11)),
    (12, 24, 12, 6, 1, 1, 0, 1, (9, 11)), (32, 64, 32, 8, 3, 1, 1, 1, (24, 26)),
    (6, 6, 3, 3, 5, 1, 2, 1, (7, 8))])
def test_grouped_conv2d_int8_matches_int64_reference(channels, out, groups, merged, kernel, stride, padding, dilation,
                                                     hw):
    gen = torch.Generator().manual_seed(channels + groups)
    x = torch.randint(0, 256, (2, channels) + hw, generator=gen, dtype=torch.uint8)
    w = torch.randint(-128, 128, (out, channels // groups, kernel, kernel), generator=gen, dtype=torch.int8)
    mult = torch.rand(out, generator=gen) * 1e-3
    bias = torch.randn(out, generator=gen)
    packed, sums = torch.ops.torchqat.pack_grouped_conv2d_int8(w, groups)
    assert packed.shape[0] == groups // merged and sums.shape == (groups // merged, out * merged // groups)
    x_zero, geometry = 33, ([kernel] * 2, [stride] * 2, [padding] * 2, [dilation] * 2)
    acc = F.conv2d(x.double() - x_zero, w.double(), stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = acc.float() * mult.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
    got = torch.ops.torchqat.grouped_conv2d_int8(x, x_zero, packed, sums, mult, bias, *geometry)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, expected)
    q = torch.ops.torchqat.grouped_conv2d_int8(x.contiguous(memory_format=torch.channels_last), x_zero, packed, sums,
                                               mult, bias, *geometry, 0.05, 100, True)
    ref_q = (torch.round(expected * torch.tensor(1 / 0.05)) + 100).clamp(100, 255).to(torch.uint8)
    assert torch.equal(q, ref_q)
    torch.library.opcheck(torch.ops.torchqat.pack_grouped_conv2d_int8.default, (w, groups))
    torch.library.opcheck(torch.ops.torchqat.grouped_conv2d_int8.default, (x, x_zero, packed, sums, mult, bias,
                                                                           *geometry))


def test_grouped_conv2d_int8_rejects_bad_input():
    w = torch.randint(-128, 128, (16, 4, 3, 3), dtype=torch.int8)
    packed, sums = torch.ops.torchqat.pack_grouped_conv2d_int8(w, 4)  # 4 groups of 4 outputs: one run
    x, mult = torch.zeros(1, 16, 5, 5, dtype=torch.uint8), torch.ones(16)
    op = torch.ops.torchqat.grouped_conv2d_int8
    geometry = ([3, 3], [1, 1], [1, 1], [1, 1])
    with pytest.raises(RuntimeError, match="x has 72 features but the weights were packed for 144"):
        op(x[:, :8], 0, packed, sums, mult, None, *geometry)  # 8 channels x 9 taps a row
    with pytest.raises(RuntimeError, match=r"must be the \[runs, ...\] tensors from pack_grouped_conv2d_int8"):
        op(x, 0, packed[0], sums, mult, None, *geometry)
    with pytest.raises(RuntimeError, match="multiplier must be a contiguous float32 tensor of 16 values"):
        op(x, 0, packed, sums, mult[:4], None, *geometry)
    with pytest.raises(RuntimeError, match="x must be a uint8 CPU tensor"):
        op(x.float(), 0, packed, sums, mult, None, *geometry)
    with pytest.raises(RuntimeError, match="groups must be >= 1 and divide the 16 output channels, got 3"):
        torch.ops.torchqat.pack_grouped_conv2d_int8(w, 3)
    with pytest.raises(RuntimeError, match=r"weight must be a 4-D int8 tensor \[out_channels, in_channels / groups"):
        torch.ops.torchqat.pack_grouped_conv2d_int8(w.float(), 4)


# Depthwise: one filter per channel (groups == channels), against F.conv2d in
# float64 on the same integers; channel counts around the 16-channel block.
@pytest.mark.parametrize("isa", ["scalar", "avx2"])
@pytest.mark.parametrize("channels,kernel,stride,padding,dilation", [
    (16, 3, 1, 1, 1), (17, 3, 2, 1, 1), (33, 3, 1, 2, 2), (5, 5, 1, 2, 1), (48, 1, 2, 0, 1), (40, 7, 1, 3, 1)])
def test_depthwise_conv2d_int8_matches_int64_reference(isa, channels, kernel, stride, padding, dilation):
    if isa not in torchqat._C.supported_isas():
        pytest.skip(f"this CPU cannot run the {isa} kernels; this parametrisation did not run")
    gen = torch.Generator().manual_seed(channels + kernel)
    x = torch.randint(0, 256, (2, channels, 11, 9), generator=gen, dtype=torch.uint8)
    w = torch.randint(-128, 128, (channels, 1, kernel, kernel), generator=gen, dtype=torch.int8)
    mult = torch.rand(channels, generator=gen) * 1e-3
    bias = torch.randn(channels, generator=gen)
    packed, sums = torch.ops.torchqat.pack_depthwise_int8(w)
    x_zero, geometry = 121, ([kernel] * 2, [stride] * 2, [padding] * 2, [dilation] * 2)
    acc = F.conv2d(x.double() - x_zero, w.double(), stride=stride, padding=padding, dilation=dilation,
                   groups=channels)
    expected = acc.float() * mult.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
    before = torchqat._C.active_isa()
    torchqat._C.set_isa(isa)
    try:
        got = torch.ops.torchqat.depthwise_conv2d_int8(x, x_zero, packed, sums, mult, bias, *geometry)
        q = torch.ops.torchqat.depthwise_conv2d_int8(x.contiguous(memory_format=torch.channels_last), x_zero,
                                                     packed, sums, mult, bias, *geometry, 0.05, 100, True)
    finally:
        torchqat._C.set_isa(before)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, expected)
    ref_q = (torch.round(expected * torch.tensor(1 / 0.05)) + 100).clamp(100, 255).to(torch.uint8)
    assert torch.equal(q, ref_q)
    torch.library.opcheck(torch.ops.torchqat.depthwise_conv2d_int8.default,
                          (x, x_zero, packed, sums, mult, bias, *geometry))


def test_depthwise_conv2d_int8_rejects_bad_input():
    w = torch.randint(-128, 128, (8, 1, 3, 3), dtype=torch.int8)
    packed, sums = torch.ops.torchqat.pack_depthwise_int8(w)
    x, mult = torch.zeros(1, 8, 5, 5, dtype=torch.uint8), torch.ones(8)
    op = torch.ops.torchqat.depthwise_conv2d_int8
    geometry = ([1, 1], [1, 1], [1, 1])
    with pytest.raises(RuntimeError, match="x has 4 channels but the weights were packed for 8"):
        op(x[:, :4], 0, packed, sums, mult, None, [3, 3], *geometry)
    with pytest.raises(RuntimeError, match=r"kernel_size \[5, 5\] has 25 taps but the weights were packed for 9"):
        op(x, 0, packed, sums, mult, None, [5, 5], *geometry)
    with pytest.raises(RuntimeError, match="does not come from pack_depthwise_int8"):
        linear_packed, _ = torch.ops.torchqat.pack_linear_int8(w.flatten(1))
        op(x, 0, linear_packed, sums, mult, None, [3, 3], *geometry)
    with pytest.raises(RuntimeError, match="x must be a uint8 CPU tensor"):
        op(x.float(), 0, packed, sums, mult, None, [3, 3], *geometry)
    with pytest.raises(RuntimeError, match="multiplier must be a contiguous float32 tensor of 8 values"):
        op(x, 0, packed, sums, mult[:3], None, [3, 3], *geometry)
    with pytest.raises(RuntimeError, match=r"weight must be a 4-D int8 tensor \[channels, 1, kernel_h, kernel_w\]"):
        torch.ops.torchqat.pack_depthwise_int8(torch.zeros(8, 2, 3, 3, dtype=torch.int8))
