"""The uint8 ops between the exported model's integer layers: add_uint8 (the
residual add) exact against dequantize -> add -> relu -> quantize_uint8 in
ATen on every operand byte pair, max_pool2d_uint8 exact against F.max_pool2d;
every kernel variant, Meta, bad input."""

import pytest
import torch
import torch.nn.functional as F

import torchqat

op = torch.ops.torchqat.add_uint8
pool = torch.ops.torchqat.max_pool2d_uint8
SA, ZA, SB, ZB, SO, ZO = 0.0413, 129, 0.0377, 3, 0.0731, 61


def every_byte_pair(shape=(4, 64, 16, 16)):
    a = torch.arange(256, dtype=torch.uint8).repeat_interleave(256).reshape(shape)
    b = torch.arange(256, dtype=torch.uint8).repeat(256).reshape(shape)
    return a, b


def float_path(a, b, relu, out_grid=None):
    """The exported model's add before add_uint8: in float, in ATen."""
    y = (a.float() - ZA) * torch.tensor(SA) + (b.float() - ZB) * torch.tensor(SB)
    y = F.relu(y) if relu else y
    if out_grid is None:
        return y
    scale, zero, qmin, qmax = out_grid
    return torch.ops.torchqat.quantize_uint8(y, torch.tensor([scale]), torch.tensor([zero]), qmin, qmax)


@pytest.fixture(params=["scalar", "avx2"])
def isa(request):
    """Runs the test on one kernel variant (skipped where the CPU lacks it)."""
    if request.param not in torchqat._C.supported_isas():
        pytest.skip(f"this CPU cannot run the {request.param} kernels; this parametrisation did not run")
    before = torchqat._C.active_isa()
    torchqat._C.set_isa(request.param)
    yield request.param
    torchqat._C.set_isa(before)


def test_add_matches_the_float_path_on_every_byte_pair(isa):
    a, b = every_byte_pair()
    for relu in (False, True):
        for fmt in (torch.contiguous_format, torch.channels_last):
            qa, qb = a.contiguous(memory_format=fmt), b.contiguous(memory_format=fmt)
            got = op(qa, SA, ZA, qb, SB, ZB, relu)
            assert torch.equal(got, float_path(a, b, relu)) and got.is_contiguous(memory_format=fmt)
            for grid in ((SO, ZO, 0, 255), (0.5, 3, 0, 15)):
                got_q = op(qa, SA, ZA, qb, SB, ZB, relu, grid[0], grid[1], grid[2], grid[3])
                assert torch.equal(got_q, float_path(a, b, relu, grid)), grid
                assert got_q.is_contiguous(memory_format=fmt)
        # Odd lengths: the vector loop's tail.
        for n in (1, 7, 33, 65537):
            x, y = a.flatten()[:n], b.flatten().flip(0)[:n]
            assert torch.equal(op(x, SA, ZA, y, SB, ZB, relu, SO, ZO), float_path(x, y, relu, (SO, ZO, 0, 255)))


def test_add_operands_in_different_layouts():
    a, b = every_byte_pair()
    got = op(a.contiguous(memory_format=torch.channels_last), SA, ZA, b, SB, ZB, True)
    assert torch.equal(got, float_path(a, b, True)) and got.is_contiguous(memory_format=torch.channels_last)


def test_add_meta_and_opcheck():
    a, b = every_byte_pair((2, 8, 4, 4 * 256))
    for out in ((), (SO, ZO)):
        meta = op(a.to("meta"), SA, ZA, b.to("meta"), SB, ZB, True, *out)
        assert meta.dtype == (torch.uint8 if out else torch.float32) and meta.shape == a.shape
        torch.library.opcheck(op.default, (a, SA, ZA, b, SB, ZB, True, *out))


@pytest.mark.parametrize("call,message", [
    (lambda a, b: op(a.float(), SA, ZA, b, SB, ZB), r"a and b must be uint8 tensors, got Float and Byte"),
    (lambda a, b: op(a, SA, ZA, b[:1], SB, ZB), r"a and b must have the same shape \(no broadcasting\)"),
    (lambda a, b: op(a, 0.0, ZA, b, SB, ZB), r"a_scale must be finite and > 0, got 0"),
    (lambda a, b: op(a, SA, ZA, b, float("nan"), ZB), r"b_scale must be finite and > 0, got nan"),
    (lambda a, b: op(a, SA, 256, b, SB, ZB), r"a_zero_point must be in \[0, 255\], got 256"),
    (lambda a, b: op(a, SA, ZA, b, SB, ZB, False, SO), r"give out_scale and out_zero_point together"),
    (lambda a, b: op(a, SA, ZA, b, SB, ZB, False, -1.0, ZO), r"out_scale must be finite and > 0, got -1"),
    (lambda a, b: op(a, SA, ZA, b, SB, ZB, False, SO, 20, 0, 15), r"out_zero_point must be in \[out_quant_min, "
                                                                   r"out_quant_max\] = \[0, 15\], got 20"),
    (lambda a, b: op(a, SA, ZA, b, SB, ZB, False, SO, ZO, 9, 3), r"0 <= out_quant_min <= out_quant_max <= 255"),
])
def test_add_bad_input_is_named(call, message):
    a, b = every_byte_pair((4, 16384))
    with pytest.raises(RuntimeError, match=message):
        call(a, b)


def _pair(v):
    return [v, v] if isinstance(v, int) else list(v)


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", [
    (3, 2, 1, 1, False), (2, 2, 0, 1, False), (3, 2, 1, 1, True), ((3, 2), (1, 2), (1, 0), (2, 1), False),
    (2, 3, 1, 1, True), (5, 1, 2, 1, False)])
def test_max_pool_matches_f_max_pool2d(isa, kernel, stride, padding, dilation, ceil_mode):
    gen = torch.Generator().manual_seed(0)
    for channels in (3, 32, 64, 70):
        x = torch.randint(0, 256, (2, channels, 13, 10), generator=gen, dtype=torch.uint8)
        want = F.max_pool2d(x.float(), kernel, stride, padding, dilation, ceil_mode).to(torch.uint8)
        for fmt in (torch.contiguous_format, torch.channels_last):
            got = pool(x.contiguous(memory_format=fmt), _pair(kernel), _pair(stride), _pair(padding),
                       _pair(dilation), ceil_mode)
            assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)


def test_max_pool_meta_and_opcheck():
    x = torch.randint(0, 256, (2, 40, 9, 9), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    meta = pool(x.to("meta"), [3, 3], [2, 2], [1, 1], [1, 1], True)
    assert meta.shape == F.max_pool2d(x.float(), 3, 2, 1, ceil_mode=True).shape and meta.dtype == torch.uint8
    torch.library.opcheck(pool.default, (x, [3, 3], [2, 2], [1, 1], [1, 1], False))


@pytest.mark.parametrize("call,message", [
    (lambda x: pool(x.float(), [3, 3], [2, 2]), r"x must be a uint8 CPU tensor, got Float"),
    (lambda x: pool(x[0], [3, 3], [2, 2]), r"x must be 4-D \[N, C, H, W\]"),
    (lambda x: pool(x, [0, 3], [2, 2]), r"kernel_size, stride and dilation must be positive"),
    (lambda x: pool(x, [3, 3], [2, 2], [2, 2]), r"padding must be at most half the dilated kernel size"),
    (lambda x: pool(x, [9, 9], [1, 1]), r"the window does not fit the padded input"),
])
def test_max_pool_bad_input_is_named(call, message):
    x = torch.randint(0, 256, (2, 4, 5, 5), dtype=torch.uint8)
    with pytest.raises(RuntimeError, match=message):
        call(x)
