"""fake_quantize_fp8 against torch's own float8 dtypes (a saturating cast)."""

import pytest
import torch

import torchqat

FORMATS = {"e4m3": (torch.float8_e4m3fn, 448.0), "e5m2": (torch.float8_e5m2, 57344.0)}


def reference(x, scale, fmt):
    dtype, max_finite = FORMATS[fmt]
    v = x.float() * (1.0 / scale)
    return (v.clamp(-max_finite, max_finite).to(dtype).float() * scale).to(x.dtype)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scale", [1.0, 0.013, 3.7])
def test_matches_torch_float8_cast(isa, fmt, scale):
    gen = torch.Generator().manual_seed(0)
    max_finite = FORMATS[fmt][1]
    # Magnitudes over the format's whole range, subnormals and overflow included.
    exponents = torch.empty(20000).uniform_(-22, torch.log2(torch.tensor(max_finite)).item() + 2, generator=gen)
    x = torch.sign(torch.randn(20000, generator=gen)) * torch.exp2(exponents) * scale
    x = torch.cat([x, torch.tensor([0.0, -0.0, float("nan")])]).requires_grad_()
    s = torch.tensor([scale])
    y = torchqat.fake_quantize_fp8(x, s, fmt)
    torch.testing.assert_close(y, reference(x.detach(), s, fmt), rtol=0, atol=0, equal_nan=True)
    y.sum().backward()
    inside = (x.detach() * (1.0 / s)).abs() <= max_finite
    assert torch.equal(x.grad, inside.float())


def test_infinities_saturate():
    y = torchqat.fake_quantize_fp8(torch.tensor([float("inf"), -float("inf")]), torch.tensor([2.0]), "e4m3")
    assert y.tolist() == [896.0, -896.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(isa, dtype):
    x = torch.randn(500).to(dtype)
    s = torch.tensor([0.01])
    assert torch.equal(torchqat.fake_quantize_fp8(x, s, "e4m3"), reference(x, s, "e4m3"))


def test_per_channel_and_per_group():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 64, generator=gen)
    per_row = torch.rand(8, generator=gen) + 0.01
    y = torchqat.fake_quantize_fp8(x, per_row, "e5m2", axis=0)
    assert torch.equal(y, torch.cat([reference(x[i : i + 1], per_row[i], "e5m2") for i in range(8)]))
    groups = torch.rand(8, 2, generator=gen) + 0.01
    y = torchqat.fake_quantize_fp8(x, groups, "e4m3", group_size=32)
    ref = reference(x.reshape(8, 2, 32), groups.unsqueeze(-1), "e4m3").reshape(8, 64)
    assert torch.equal(y, ref)


def test_unknown_format_is_rejected():
    with pytest.raises(RuntimeError, match='fmt must be "e4m3" or "e5m2"'):
        torchqat.fake_quantize_fp8(torch.randn(4), 1.0, "e3m4")
