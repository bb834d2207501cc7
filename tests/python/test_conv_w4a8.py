"""W4A8 Conv2d (uint8 channels-last activations x int4 weights with a scale
per group of input channels): every kernel variant against a float64 conv of
the dequantized operands, on few-row, tiled and pointwise geometries; fused
ReLU and uint8 output; the grouping it shares with the QAT layers;
Meta/opcheck; bad input."""

import pytest
import torch
import torch.nn.functional as F

import torchqat  # noqa: F401  (registers the ops)
from torchqat.nn.modules import group_rows, ungroup_rows


def problem(n, c, hw, o, k, group, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, hw, hw), generator=gen, dtype=torch.uint8)
    q = torch.randint(-8, 8, (o, c, k, k), generator=gen, dtype=torch.int8)
    scales = torch.rand(o, c * k * k // group, generator=gen) * 0.1 + 0.01
    bias = torch.randn(o, generator=gen)
    return x.contiguous(memory_format=torch.channels_last), q, scales, bias


def reference(x, x_zero, x_scale, q, scales, bias, stride, padding, dilation):
    """float64 conv of the dequantized input and weights; the input's zero
    padding is the zero point's."""
    rows = group_rows(q.double())
    w = ungroup_rows(rows * scales.double().repeat_interleave(rows.shape[1] // scales.shape[1], dim=1), q.shape)
    return F.conv2d((x.double() - x_zero) * x_scale, w, None if bias is None else bias.double(), stride, padding,
                    dilation)


def conv_w4a8(x, x_zero, x_scale, q, scales, bias, stride, padding, dilation):
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(group_rows(q).contiguous(), scales)
    return torch.ops.torchqat.conv2d_w4a8(x, x_zero, x_scale, packed, scales, sums, bias, list(q.shape[2:]),
                                          stride, padding, dilation)


GEOMETRIES = [  # (n, c, hw, o, k, stride, padding, dilation): few rows, many rows (tiles), pointwise
    (1, 32, 5, 7, 3, [1, 1], [1, 1], [1, 1]),
    (2, 64, 9, 33, 3, [2, 2], [1, 1], [1, 1]),
    (1, 32, 8, 16, 3, [1, 1], [2, 2], [2, 2]),
    (3, 32, 16, 20, 3, [1, 1], [1, 1], [1, 1]),  # 768 rows: tiled im2col
    (4, 64, 12, 12, 1, [1, 1], [0, 0], [1, 1]),  # 576 rows, pointwise: tiles of the input itself
    (2, 64, 6, 9, 1, [1, 1], [0, 0], [1, 1]),    # pointwise, few rows
    (2, 128, 16, 10, 1, [2, 2], [0, 0], [1, 1]),  # strided 1x1 (ResNet's downsample)
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g[:5])))
def test_matches_float64_conv(isa, geometry):
    n, c, hw, o, k, stride, padding, dilation = geometry
    for group in [g for g in (32, 64) if c * k * k % g == 0]:
        x, q, scales, bias = problem(n, c, hw, o, k, group, seed=c + o + group)
        for x_zero, b in ((0, None), (131, bias), (255, bias)):
            got = conv_w4a8(x, x_zero, 0.02, q, scales, b, stride, padding, dilation)
            expected = reference(x, x_zero, 0.02, q, scales, b, stride, padding, dilation)
            assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("geometry", [GEOMETRIES[1], GEOMETRIES[3], GEOMETRIES[4]], ids=["few", "tiled", "pointwise"])
def test_relu_and_uint8_output_are_those_of_the_float_output(geometry):
    """The fused ReLU and the requantized output: the float result, ReLU'd,
    through quantize_uint8 (the next layer's input quantizer), exactly."""
    n, c, hw, o, k, stride, padding, dilation = geometry
    x, q, scales, bias = problem(n, c, hw, o, k, 32, seed=11)
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(group_rows(q).contiguous(), scales)
    op = torch.ops.torchqat.conv2d_w4a8
    args = (x, 17, 0.02, packed, scales, sums, bias, [k, k], stride, padding, dilation)
    y = op(*args)
    assert torch.equal(op(*args, None, None, True), y.relu())
    for relu, zero in ((False, 128), (True, 37)):
        got = op(*args, 0.05, zero, relu)
        assert got.dtype == torch.uint8 and got.is_contiguous(memory_format=torch.channels_last)
        expected = torch.ops.torchqat.quantize_uint8(y.relu() if relu else y, torch.tensor([0.05]),
                                                     torch.tensor([zero], dtype=torch.int32), 0, 255)
        assert torch.equal(got, expected)


def test_groups_span_taps_when_wider_than_the_channels():
    """16 channels, groups of 32: a group covers two neighbouring taps of the
    channels-last row (a 2x2 kernel: 64 elements per row)."""
    x, q, scales, bias = problem(2, 16, 7, 8, 2, 32, seed=3)
    got = conv_w4a8(x, 7, 0.05, q, scales, bias, [1, 1], [1, 1], [1, 1])
    torch.testing.assert_close(got.double(), reference(x, 7, 0.05, q, scales, bias, [1, 1], [1, 1], [1, 1]),
                               rtol=1e-5, atol=1e-4)


def test_group_rows_round_trip_and_order():
    w = torch.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    rows = group_rows(w)
    assert rows[0, :3].tolist() == [0, 4, 8]  # tap (0, 0) of channels 0, 1, 2 first
    assert torch.equal(ungroup_rows(rows, tuple(w.shape)), w)
    lin = torch.randn(4, 6)
    assert group_rows(lin) is lin


def test_meta_and_opcheck():
    x, q, scales, bias = problem(1, 32, 5, 8, 3, 32)
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(group_rows(q).contiguous(), scales)
    args = (x, 5, 0.1, packed, scales, sums, bias, [3, 3], [2, 2], [1, 1], [1, 1])
    meta = tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in args)
    out = torch.ops.torchqat.conv2d_w4a8(*meta)
    assert out.shape == (1, 8, 3, 3) and out.dtype == torch.float32
    assert torch.ops.torchqat.conv2d_w4a8(*meta, 0.1, 3, True).dtype == torch.uint8
    torch.library.opcheck(torch.ops.torchqat.conv2d_w4a8.default, args)
    torch.library.opcheck(torch.ops.torchqat.conv2d_w4a8.default, args + (0.1, 3, True))


def test_bad_input_is_named():
    x, q, scales, bias = problem(1, 32, 5, 8, 3, 32)
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(group_rows(q).contiguous(), scales)
    op = torch.ops.torchqat.conv2d_w4a8
    geometry = ([3, 3], [1, 1], [1, 1], [1, 1])
    with pytest.raises(RuntimeError, match="x must be a uint8 CPU tensor"):
        op(x.float(), 0, 0.1, packed, scales, sums, bias, *geometry)
    with pytest.raises(RuntimeError, match="x has 16 channels, 144 values per 3x3 patch, but the weights were packed for 288"):
        op(x[:, :16], 0, 0.1, packed, scales, sums, bias, *geometry)
    with pytest.raises(RuntimeError, match=r"x_zero_point must be in \[0, 255\], got -1"):
        op(x, -1, 0.1, packed, scales, sums, bias, *geometry)
    with pytest.raises(RuntimeError, match="the kernel does not fit the padded input"):
        op(x, 0, 0.1, packed, scales, sums, bias, [3, 3], [1, 1], [0, 0], [4, 4])
    with pytest.raises(RuntimeError, match="bias must be a contiguous float32 CPU tensor of 8 values"):
        op(x, 0, 0.1, packed, scales, sums, bias[:4], *geometry)
    with pytest.raises(RuntimeError, match="give out_scale and out_zero_point together"):
        op(x, 0, 0.1, packed, scales, sums, bias, *geometry, 0.1, None)
    with pytest.raises(RuntimeError, match=r"out_zero_point must be in \[0, 255\], got 300"):
        op(x, 0, 0.1, packed, scales, sums, bias, *geometry, 0.1, 300)
