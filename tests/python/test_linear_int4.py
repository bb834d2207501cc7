"""INT4 weight-only Linear: packing round trip, every kernel variant against a
float64 reference over dequantized weights, bad input."""

import pytest
import torch

import torchqat  # noqa: F401  (registers the ops)


def problem(m, n, k, group, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen)
    q = torch.randint(-8, 8, (n, k), generator=gen, dtype=torch.int8)
    scales = torch.rand(n, k // group, generator=gen) * 0.1 + 0.01
    bias = torch.randn(n, generator=gen)
    return x, q, scales, bias


def reference(x, q, scales, bias):
    group = q.shape[1] // scales.shape[1]
    w = q.double() * scales.double().repeat_interleave(group, dim=1)
    y = x.double() @ w.t()
    return y + bias.double() if bias is not None else y


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
@pytest.mark.parametrize("group", [32, 64, 128])
def test_matches_float64_reference(isa, group):
    if isa not in torchqat._C.supported_isas():
        pytest.skip(f"this CPU cannot run the {isa} kernels; this parametrisation did not run")
    before = torchqat._C.active_isa()
    torchqat._C.set_isa(isa)
    try:
        for m, n, k in [(1, 1, 128), (1, 7, 256), (3, 33, 384), (2, 64, 512), (1, 257, 128)]:
            x, q, scales, bias = problem(m, n, k, group, seed=n + k)
            packed = torch.ops.torchqat.pack_linear_int4(q)
            for b in (None, bias):
                got = torch.ops.torchqat.linear_int4(x, packed, scales, b)
                torch.testing.assert_close(got.double(), reference(x, q, scales, b), rtol=1e-5, atol=1e-4)
    finally:
        torchqat._C.set_isa(before)


def test_extremes_and_batched_input():
    x = torch.full((2, 3, 64), 2.0)
    q = torch.cat([torch.full((4, 64), -8, dtype=torch.int8), torch.full((4, 64), 7, dtype=torch.int8)])
    scales = torch.full((8, 2), 0.5)
    out = torch.ops.torchqat.linear_int4(x, torch.ops.torchqat.pack_linear_int4(q), scales)
    assert out.shape == (2, 3, 8)
    expected = torch.tensor([-8.0] * 4 + [7.0] * 4) * 2.0 * 0.5 * 64
    assert torch.equal(out[1, 2], expected)


def test_meta_and_opcheck():
    x, q, scales, bias = problem(2, 16, 64, 32)
    packed = torch.ops.torchqat.pack_linear_int4(q)
    out = torch.ops.torchqat.linear_int4(x.to("meta"), packed.to("meta"), scales.to("meta"))
    assert out.shape == (2, 16)
    torch.library.opcheck(torch.ops.torchqat.linear_int4.default, (x, packed, scales, bias))
    torch.library.opcheck(torch.ops.torchqat.pack_linear_int4.default, (q,))


def test_bad_input_is_named():
    x, q, scales, bias = problem(2, 16, 64, 32)
    packed = torch.ops.torchqat.pack_linear_int4(q)
    op = torch.ops.torchqat.linear_int4
    with pytest.raises(RuntimeError, match=r"weight values must be int4, in \[-8, 7\]"):
        torch.ops.torchqat.pack_linear_int4(q * 2)
    with pytest.raises(RuntimeError, match="in_features must be a multiple of 32"):
        torch.ops.torchqat.pack_linear_int4(q[:, :40])
    with pytest.raises(RuntimeError, match="x has 32 features but the weights were packed for 64"):
        op(x[:, :32], packed, scales[:, :1].contiguous())
    with pytest.raises(RuntimeError, match="which must split in_features"):
        op(x, packed, torch.ones(16, 3))
    stale = packed.clone()
    stale[2] = 0
    with pytest.raises(RuntimeError, match="packing version 0; this build reads 1"):
        op(x, stale, scales)
    with pytest.raises(RuntimeError, match="x must be a float32 CPU tensor"):
        op(x.double(), packed, scales)
