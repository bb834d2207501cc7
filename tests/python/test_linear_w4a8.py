"""W4A8 Linear (uint8 activations x int4 weights): every kernel variant against
a float64 reference over the integers, agreement with the weight-only op on
the dequantized input, zero points and extremes, Meta/opcheck, bad input."""

import pytest
import torch

import torchqat  # noqa: F401  (registers the ops)


def problem(m, n, k, group, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (m, k), generator=gen, dtype=torch.uint8)
    q = torch.randint(-8, 8, (n, k), generator=gen, dtype=torch.int8)
    scales = torch.rand(n, k // group, generator=gen) * 0.1 + 0.01
    bias = torch.randn(n, generator=gen)
    return x, q, scales, bias


def reference(x, x_zero, x_scale, q, scales, bias):
    group = q.shape[1] // scales.shape[1]
    w = q.double() * scales.double().repeat_interleave(group, dim=1)
    y = ((x.double() - x_zero) * x_scale) @ w.t()
    return y + bias.double() if bias is not None else y


def w4a8(x, x_zero, x_scale, q, scales, bias=None):
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(q, scales)
    return torch.ops.torchqat.linear_w4a8(x, x_zero, x_scale, packed, scales, sums, bias)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_matches_float64_reference(isa, group):
    for m, n, k, x_zero in [(1, 1, 128, 0), (1, 7, 256, 128), (3, 33, 384, 255), (2, 64, 512, 17), (5, 257, 128, 3),
                            (8, 17, 256, 9), (37, 70, 384, 200)]:  # from 8 rows: unpacked panels
        x, q, scales, bias = problem(m, n, k, group, seed=n + k)
        for b in (None, bias):
            got = w4a8(x, x_zero, 0.02, q, scales, b)
            torch.testing.assert_close(got.double(), reference(x, x_zero, 0.02, q, scales, b), rtol=1e-5, atol=1e-4)


def test_equals_weight_only_op_on_the_dequantized_input():
    """What the export relies on: the integers of a fake-quantized input give
    what linear_int4 gives on that input, to float rounding."""
    x, q, scales, bias = problem(4, 96, 1024, 32, seed=5)
    x_zero, x_scale = 121, 0.037
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(q, scales)
    assert torch.equal(packed, torch.ops.torchqat.pack_linear_int4(q))  # one packed format for both ops
    got = torch.ops.torchqat.linear_w4a8(x, x_zero, x_scale, packed, scales, sums, bias)
    dequantized = (x.float() - x_zero) * x_scale
    expected = torch.ops.torchqat.linear_int4(dequantized, packed, scales, bias)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_extremes_exact_and_batched_input():
    x = torch.full((2, 3, 64), 255, dtype=torch.uint8)
    q = torch.cat([torch.full((4, 64), -8, dtype=torch.int8), torch.full((4, 64), 7, dtype=torch.int8)])
    scales = torch.full((8, 2), 0.5)
    out = w4a8(x, 0, 0.25, q, scales)
    assert out.shape == (2, 3, 8) and out.dtype == torch.float32
    expected = torch.tensor([-8.0] * 4 + [7.0] * 4) * 255 * 0.25 * 0.5 * 64
    assert torch.equal(out[1, 2], expected)
    assert torch.equal(w4a8(x, 255, 0.25, q, scales), torch.zeros(2, 3, 8))  # x - x_zero = 0 everywhere


def test_meta_and_opcheck():
    x, q, scales, bias = problem(2, 16, 64, 32)
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(q, scales)
    out = torch.ops.torchqat.linear_w4a8(x.to("meta"), 7, 0.1, packed.to("meta"), scales.to("meta"), sums.to("meta"))
    assert out.shape == (2, 16) and out.dtype == torch.float32
    torch.library.opcheck(torch.ops.torchqat.linear_w4a8.default, (x, 7, 0.1, packed, scales, sums, bias))
    torch.library.opcheck(torch.ops.torchqat.pack_linear_w4a8.default, (q, scales))


def test_bad_input_is_named():
    x, q, scales, bias = problem(2, 16, 64, 32)
    packed, sums = torch.ops.torchqat.pack_linear_w4a8(q, scales)
    op = torch.ops.torchqat.linear_w4a8
    with pytest.raises(RuntimeError, match="x must be a uint8 CPU tensor"):
        op(x.float(), 0, 0.1, packed, scales, sums)
    with pytest.raises(RuntimeError, match=r"x_zero_point must be in \[0, 255\], got 256"):
        op(x, 256, 0.1, packed, scales, sums)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(RuntimeError, match="x_scale must be positive and finite"):
            op(x, 0, bad, packed, scales, sums)
    with pytest.raises(RuntimeError, match="weight_sums must be the contiguous float32 CPU tensor of 16 values"):
        op(x, 0, 0.1, packed, scales, sums[:8])
    with pytest.raises(RuntimeError, match="x has 32 features but the weights were packed for 64"):
        op(x[:, :32].contiguous(), 0, 0.1, packed, scales[:, :1].contiguous(), sums)
    with pytest.raises(RuntimeError, match=r"scales must be \[out_features \(16\), groups\]"):
        torch.ops.torchqat.pack_linear_w4a8(q, scales[:8])
    with pytest.raises(RuntimeError, match=r"weight values must be int4, in \[-8, 7\]"):
        torch.ops.torchqat.pack_linear_w4a8(q * 2, scales)
