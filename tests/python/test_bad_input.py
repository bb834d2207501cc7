"""Every bad input gets an error that names the argument and what is allowed."""

import pytest
import torch

import torchqat

X = torch.randn(4, 6)
S = torch.tensor([0.1])
Z = torch.tensor([0], dtype=torch.int32)


def fq(x=X, scale=S, zp=Z, qmin=-128, qmax=127, **kw):
    return torchqat.fake_quantize(x, scale, zp, qmin, qmax, **kw)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: fq(qmin=5, qmax=5), r"quant_min \(5\) must be less than quant_max \(5\)"),
        (lambda: fq(qmin=10, qmax=-3), r"quant_min \(10\) must be less than quant_max \(-3\)"),
        (lambda: fq(qmin=0, qmax=2**32), r"must lie inside the int32 range"),
        (lambda: fq(qmin=-(2**33), qmax=0), r"must lie inside the int32 range"),
        (lambda: fq(scale=torch.tensor([0.0])), r"scale must be finite and > 0, got 0 at index 0"),
        (lambda: fq(scale=torch.tensor([-0.5])), r"scale must be finite and > 0, got -0.5"),
        (lambda: fq(scale=torch.tensor([float("nan")])), r"scale must be finite and > 0, got nan"),
        (lambda: fq(scale=torch.tensor([float("inf")])), r"scale must be finite and > 0, got inf"),
        (lambda: fq(scale=torch.tensor([0.1, 0.2, 0.0, 0.1]), zp=torch.zeros(4), axis=0), r"got 0 at index 2"),
        (lambda: fq(scale=torch.tensor([1], dtype=torch.int32)), r"scale must be a floating-point tensor, got Int"),
        (lambda: fq(zp=torch.tensor([200])), r"zero_point \(200 at index 0\) must lie in \[quant_min, quant_max\] = \[-128, 127\]"),
        (lambda: fq(zp=torch.tensor([-1]), qmin=0, qmax=255), r"zero_point \(-1 at index 0\) must lie in"),
        (lambda: fq(zp=torch.tensor([0.5])), r"zero_point must hold integers, got 0.5"),
        (lambda: fq(zp=torch.tensor([True])), r"zero_point must be an integer tensor"),
        (lambda: fq(scale=torch.tensor([0.1, 0.2])), r"per-tensor scale must have exactly one element, got shape \[2\]"),
        (lambda: fq(zp=torch.tensor([0, 0])), r"per-tensor zero_point must have exactly one element"),
        (lambda: fq(scale=torch.ones(6), zp=torch.zeros(6), axis=0), r"per-channel scale must be 1-D of length x.size\(0\) = 4, got shape \[6\]"),
        (lambda: fq(scale=torch.ones(4), zp=torch.zeros(3), axis=0), r"per-channel zero_point must be 1-D of length x.size\(0\) = 4"),
        (lambda: fq(scale=torch.ones(4, 1), zp=torch.zeros(4), axis=0), r"per-channel scale must be 1-D"),
        (lambda: fq(scale=torch.ones(4), zp=torch.zeros(4), axis=2), r"axis \(2\) is out of range for x with 2 dimensions; allowed: \[-2, 1\]"),
        (lambda: fq(scale=torch.ones(4), zp=torch.zeros(4), axis=-3), r"axis \(-3\) is out of range"),
        (lambda: fq(x=torch.tensor(1.0), axis=0), r"axis needs x with at least one dimension"),
        (lambda: fq(scale=torch.ones(4, 1), zp=torch.zeros(4, 1), group_size=4), r"group_size \(4\) must divide the last dimension of x \(6\)"),
        (lambda: fq(scale=torch.ones(4, 2), zp=torch.zeros(4, 2), group_size=2), r"per-group scale must have shape .* = \[4, 3\], got \[4, 2\]"),
        (lambda: fq(scale=torch.ones(4, 3), zp=torch.zeros(4, 3), group_size=0), r"group_size must be >= 1, got 0"),
        (lambda: fq(scale=torch.ones(4), zp=torch.zeros(4), axis=0, group_size=2), r"give axis \(per-channel\) or group_size \(per-group\), not both"),
        (lambda: fq(x=torch.ones(4, 6, dtype=torch.int64)), r"x must be a float32, float16 or bfloat16 tensor, got Long"),
        (lambda: fq(x=torch.ones(4, 6, dtype=torch.bool)), r"x must be a float32, float16 or bfloat16 tensor, got Bool"),
        (lambda: fq(x=torch.ones(4, 6, dtype=torch.float64)), r"x must be a float32, float16 or bfloat16 tensor, got Double"),
        (lambda: fq(scale=torch.tensor([0.1], device="meta")), r"scale is on meta but x is on cpu; both must be on the same device"),
        (lambda: fq(zp=torch.tensor([0], device="meta")), r"zero_point is on meta but x is on cpu"),
        (lambda: torchqat.fake_quantize_fp8(X, torch.tensor([-1.0])), r"fake_quantize_fp8: scale must be finite and > 0"),
        (lambda: torchqat.fake_quantize_fp8(X.int(), S), r"fake_quantize_fp8: x must be a float32"),
        (lambda: torch.ops.torchqat.ste_backward(torch.randn(20), torch.zeros(2, dtype=torch.uint8)), r"mask has 2 bytes but grad has 20 elements \(expected 3 bytes\)"),
        (lambda: torch.ops.torchqat.ste_backward(torch.randn(20), torch.zeros(3, dtype=torch.bool)), r"mask must be a 1-D uint8 tensor"),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


def test_quant_range_helper():
    assert torchqat.quant_range(8) == (-128, 127)
    assert torchqat.quant_range(8, signed=False) == (0, 255)
    assert torchqat.quant_range(8, narrow_range=True) == (-127, 127)
    assert torchqat.quant_range(4) == (-8, 7)
    with pytest.raises(ValueError, match=r"bits must be in \[2, 31\] for unsigned integers, got 32"):
        torchqat.quant_range(32, signed=False)
    with pytest.raises(ValueError, match=r"bits must be in \[2, 32\] for signed integers, got 1"):
        torchqat.quant_range(1)


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        torchqat._C.set_isa("sse9")


def lsq(x=X, scale=S, zp=torch.tensor([0.0]), qmin=-8, qmax=7, grad_factor=None, **kw):
    return torchqat.lsq_fake_quantize(x, scale, zp, qmin, qmax, grad_factor, **kw)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: lsq(scale=torch.tensor([0.1, -0.2, 0.0, -3.0]), zp=torch.zeros(4), axis=0),
         r"scale must be finite and > 0, got -3 at index 3 \(the smallest of 3 offending values\)"),
        (lambda: lsq(scale=torch.tensor([0.1, float("nan"), -1.0, 0.2]), zp=torch.zeros(4), axis=0),
         r"got nan at index 1 \(the smallest of 2 offending values\)"),
        (lambda: lsq(scale=torch.tensor([2], dtype=torch.int64)), r"scale must be a floating-point tensor, got Long"),
        (lambda: lsq(grad_factor=0.0), r"grad_factor must be finite and > 0, got 0"),
        (lambda: lsq(grad_factor=float("inf")), r"grad_factor must be finite and > 0, got inf"),
        (lambda: lsq(zp=torch.tensor([float("nan")])), r"zero_point must be finite, got nan at index 0"),
        (lambda: lsq(zp=torch.tensor([True])), r"zero_point must be a real or integer tensor, got Bool"),
        (lambda: lsq(qmin=3, qmax=3), r"quant_min \(3\) must be less than quant_max \(3\)"),
        (lambda: lsq(x=X.long()), r"x must be a float32, float16 or bfloat16 tensor, got Long"),
        (lambda: lsq(scale=torch.ones(6), zp=torch.zeros(6), axis=0), r"per-channel scale must be 1-D of length x.size\(0\) = 4"),
        (lambda: lsq(scale=torch.ones(4, 1), zp=torch.zeros(4, 1), group_size=4), r"group_size \(4\) must divide the last dimension"),
        (lambda: lsq(scale=torch.tensor([0.1], device="meta")), r"scale is on meta but x is on cpu"),
        (lambda: torch.ops.torchqat.lsq_fake_quantize_backward(torch.randn(3), X, S, torch.zeros(1), -8, 7, None, None, None),
         r"grad must have x's shape and dtype"),
        (lambda: torchqat.qparams_from_range(torch.tensor([float("inf")]), torch.tensor([float("-inf")]), 0, 255),
         r"the range at index 0 is \[inf, -inf\]; it must be finite with min_val <= max_val \(has the observer seen data\?\)"),
        (lambda: torchqat.qparams_from_range(torch.zeros(2), torch.zeros(3), 0, 255), r"must have the same shape"),
    ],
)
def test_lsq_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()
