"""lsq_fake_quantize: parity with ATen's learnable fake-quant ops, written-out
gradient formulas, finite differences, determinism, tracing, convergence."""

import math
import warnings

import pytest
import torch

import torchqat

ops = torch.ops.torchqat


def lsq_grads_reference(x, g, scale, zp, qmin, qmax, grad_factor):
    """The LSQ / LSQ+ gradients written out in float64, per element, for a per-tensor scale."""
    x, g = x.double(), g.double()
    s = float(scale)
    z = float(torch.round(zp).clamp(qmin, qmax))
    v = x * (1.0 / torch.tensor(s, dtype=torch.float32)).double()
    r = torch.round(v)
    q = r + z
    inside = (q >= qmin) & (q <= qmax)
    below, above = q < qmin, q > qmax
    term = torch.where(inside, r - v, torch.where(below, qmin - z, torch.where(above, qmax - z, 0.0)))
    d_x = torch.where(inside, g, 0.0)
    d_scale = (g * term).sum() * grad_factor
    d_zp = (torch.where(below | above, g, 0.0) * -s).sum() * grad_factor
    return d_x, d_scale, d_zp


def close_sum(ours, ref, terms_abs):
    # A per-scale sum of many terms: compared with a bound on float32 accumulation error.
    torch.testing.assert_close(ours.double().reshape(-1), ref.double().reshape(-1), rtol=1e-5, atol=1e-6 * float(terms_abs) + 1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("qrange", [(-8, 7), (0, 15), (-128, 127), (0, 255), (-2, 1)])
def test_per_tensor_matches_aten(isa, seed, qrange):
    qmin, qmax = qrange
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 200_000, (1,), generator=gen))
    x = torch.randn(n, generator=gen) * 3
    g = torch.randn(n, generator=gen)
    scale = torch.rand(1, generator=gen) * (6.0 / (qmax - qmin)) + 1e-3
    # ATen's per-tensor backward rounds the zero point as trunc(zp + 0.5), which
    # for negative zero points is not the zero point its forward used; parity
    # therefore holds for zp >= 0 (see test_negative_zero_point_is_consistent).
    zp = torch.randint(max(qmin, 0), qmax + 1, (1,), generator=gen).float()
    gf = 0.3
    args = [t.clone().requires_grad_() for t in (x, scale, zp)]
    ref_args = [t.clone().requires_grad_() for t in (x, scale, zp)]
    y = torchqat.lsq_fake_quantize(*args, qmin, qmax, gf)
    y_ref = torch._fake_quantize_learnable_per_tensor_affine(*ref_args, qmin, qmax, gf)
    assert torch.equal(y, y_ref)
    y.backward(g)
    y_ref.backward(g)
    assert torch.equal(args[0].grad, ref_args[0].grad)
    close_sum(args[1].grad, ref_args[1].grad, (g.abs() * (qmax - qmin)).sum() * gf)
    close_sum(args[2].grad, ref_args[2].grad, (g.abs() * scale).sum() * gf)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape,axis", [((64, 300), 0), ((8, 16, 7, 7), 1), ((30, 20), -1), ((5, 3, 40), 1), ((300, 5), 0)])
def test_per_channel_matches_aten(isa, seed, shape, axis):
    qmin, qmax = -8, 7
    gen = torch.Generator().manual_seed(seed)
    channels = shape[axis]
    x = torch.randn(shape, generator=gen) * 2
    g = torch.randn(shape, generator=gen)
    scale = torch.rand(channels, generator=gen) * 0.3 + 0.05
    zp = (torch.rand(channels, generator=gen) * 6 - 3).round()
    args = [t.clone().requires_grad_() for t in (x, scale, zp)]
    ref_args = [t.clone().requires_grad_() for t in (x, scale, zp)]
    y = torchqat.lsq_fake_quantize(*args, qmin, qmax, 0.7, axis=axis)
    y_ref = torch._fake_quantize_learnable_per_channel_affine(*ref_args, axis % len(shape), qmin, qmax, 0.7)
    assert torch.equal(y, y_ref)
    y.backward(g)
    y_ref.backward(g)
    assert torch.equal(args[0].grad, ref_args[0].grad)
    close_sum(args[1].grad, ref_args[1].grad, g.abs().sum() * 16)
    close_sum(args[2].grad, ref_args[2].grad, g.abs().sum())


def test_default_grad_factor_is_lsq_paper():
    gen = torch.Generator().manual_seed(0)
    x, g = torch.randn(64, 50, generator=gen), torch.randn(64, 50, generator=gen)
    scale = torch.rand(64, generator=gen) * 0.2 + 0.05
    zp = torch.zeros(64)
    _, ds, _ = ops.lsq_fake_quantize_backward(g, x, scale, zp, -8, 7, None, 0, None)
    _, ds1, _ = ops.lsq_fake_quantize_backward(g, x, scale, zp, -8, 7, 1.0, 0, None)
    torch.testing.assert_close(ds, ds1 / math.sqrt(50 * 7))


def test_per_group_matches_per_channel_over_groups(isa):
    gen = torch.Generator().manual_seed(4)
    x, g = torch.randn(16, 128, generator=gen), torch.randn(16, 128, generator=gen)
    scale = torch.rand(16, 4, generator=gen) * 0.3 + 0.05
    zp = torch.zeros(16, 4)
    gx, ds, dz = ops.lsq_fake_quantize_backward(g, x, scale, zp, -8, 7, 0.5, None, 32)
    gx_r, ds_r, dz_r = ops.lsq_fake_quantize_backward(g.reshape(-1, 32), x.reshape(-1, 32), scale.flatten(), zp.flatten(), -8, 7, 0.5, 0, None)
    assert torch.equal(gx, gx_r.reshape(16, 128))
    torch.testing.assert_close(ds, ds_r.reshape(16, 4))
    torch.testing.assert_close(dz, dz_r.reshape(16, 4))
    y = torchqat.lsq_fake_quantize(x, scale, zp, -8, 7, group_size=32)
    assert torch.equal(y, torchqat.fake_quantize(x, scale, zp, -8, 7, group_size=32))


def test_negative_zero_point_is_consistent_with_the_forward(isa):
    gen = torch.Generator().manual_seed(2)
    x, g = torch.randn(5000, generator=gen) * 0.5, torch.randn(5000, generator=gen)
    scale, zp = torch.tensor([0.05]), torch.tensor([-2.0])
    gx, ds, dz = ops.lsq_fake_quantize_backward(g, x, scale, zp, -8, 7, 0.25, None, None)
    rx, rs, rz = lsq_grads_reference(x, g, scale, zp, -8, 7, 0.25)
    assert torch.equal(gx, rx.float())
    close_sum(ds, rs, g.abs().sum() * 15 * 0.25)
    close_sum(dz, rz, g.abs().sum() * 0.05 * 0.25)


@pytest.mark.parametrize("zp_value", [0.0, 3.0, 4.5, 5.5, 20.0])
def test_written_out_formulas_and_zero_point_rounding(isa, zp_value):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(70_001, generator=gen)
    g = torch.randn(70_001, generator=gen)
    scale, zp = torch.tensor([0.11]), torch.tensor([zp_value])
    y = torchqat.lsq_fake_quantize(x, scale, zp, 0, 15)
    rounded = torch.round(zp).clamp(0, 15)  # half to even, clamped: 4.5 -> 4, 5.5 -> 6, 20 -> 15
    assert torch.equal(y, torch.fake_quantize_per_tensor_affine(x, scale, rounded.int(), 0, 15))
    gx, ds, dz = ops.lsq_fake_quantize_backward(g, x, scale, zp, 0, 15, 0.01, None, None)
    rx, rs, rz = lsq_grads_reference(x, g, scale, zp, 0, 15, 0.01)
    assert torch.equal(gx, rx.float())
    close_sum(ds, rs, g.abs().sum() * 15 * 0.01)
    close_sum(dz, rz, g.abs().sum() * 0.11 * 0.01)


def test_finite_differences_where_lsq_is_the_true_derivative():
    # LSQ passes round() straight through: inside the range d/dscale is
    # round(v) - v, and d/dzero_point is -scale outside, neither of which is the
    # derivative of the piecewise-constant function (those are checked against
    # the written-out formulas above). Where every element is clamped, the
    # function is (quant_min|max - zp) * scale and LSQ's d/dscale is exact.
    x = torch.tensor([3.0, 4.1, -5.2, 6.3, -7.4, 9.0, -1.5])
    scale = torch.tensor([0.2], requires_grad=True)
    zp = torch.tensor([1.3])
    fn = lambda s: torchqat.lsq_fake_quantize(x, s, zp, -3, 3, 1.0)  # noqa: E731
    with warnings.catch_warnings():  # float32 on purpose: the kernels compute in float32
        warnings.filterwarnings("ignore", "Input #0 requires gradient and is not a double")
        assert torch.autograd.gradcheck(fn, (scale,), eps=1e-3, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("shape,axis", [((3_000_001,), None), ((256, 4096), 0), ((64, 8, 2048), 1)])
def test_sums_are_bitwise_deterministic_across_thread_counts(shape, axis):
    gen = torch.Generator().manual_seed(1)
    x, g = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    channels = 1 if axis is None else shape[axis]
    scale, zp = torch.rand(channels, generator=gen) * 0.05 + 0.01, torch.zeros(channels)
    results = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        results.append(ops.lsq_fake_quantize_backward(g, x, scale, zp, -8, 7, None, axis, None))
    torch.set_num_threads(2)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(isa, dtype):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(40, 96, generator=gen).to(dtype).requires_grad_()
    scale = (torch.rand(40, generator=gen) * 0.2 + 0.05).requires_grad_()
    zp = torch.zeros(40, requires_grad=True)
    y = torchqat.lsq_fake_quantize(x, scale, zp, -8, 7, axis=0)
    assert y.dtype == dtype
    assert torch.equal(y, torchqat.fake_quantize(x.detach(), scale.detach(), zp.detach(), -8, 7, axis=0))
    g = torch.randn(40, 96, generator=gen).to(dtype)
    y.backward(g)
    x32, s32, z32 = (t.detach().float().clone().requires_grad_() for t in (x, scale, zp))
    torchqat.lsq_fake_quantize(x32, s32, z32, -8, 7, axis=0).backward(g.float())
    assert x.grad.dtype == dtype and torch.equal(x.grad.float(), x32.grad)
    assert scale.grad.dtype == torch.float32
    torch.testing.assert_close(scale.grad, s32.grad, rtol=1e-5, atol=1e-6)


def test_under_autocast():
    lin = torch.nn.Linear(32, 16)
    scale = torch.nn.Parameter(torch.tensor([0.05]))
    zp = torch.nn.Parameter(torch.tensor([0.0]))
    x = torch.randn(8, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        y = torchqat.lsq_fake_quantize(h, scale, zp, -128, 127)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert scale.grad is not None and torch.isfinite(scale.grad).all()
    assert lin.weight.grad is not None


def test_integer_zero_point_gets_no_gradient():
    scale = torch.tensor([0.1], requires_grad=True)
    y = torchqat.lsq_fake_quantize(torch.randn(100), scale, torch.tensor([3], dtype=torch.int32), 0, 15)
    y.sum().backward()
    assert scale.grad is not None


def test_opcheck():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 40, generator=gen)
    for scale, zp, axis, group in [
        (torch.tensor([0.05]), torch.tensor([1.0]), None, None),
        (torch.rand(6) * 0.1 + 0.01, torch.zeros(6), 0, None),
        (torch.rand(6, 5) * 0.1 + 0.01, torch.zeros(6, 5), None, 8),
    ]:
        req = [t.clone().requires_grad_() for t in (x, scale, zp)]
        torch.library.opcheck(ops.lsq_fake_quantize.default, (*req, -8, 7, None, axis, group))
        torch.library.opcheck(ops.lsq_fake_quantize_forward.default, (x, scale, zp, -8, 7, axis, group))
        torch.library.opcheck(ops.lsq_fake_quantize_backward.default, (torch.randn(6, 40), x, scale, zp, -8, 7, 0.5, axis, group))
    torch.library.opcheck(ops.choose_qparams.default, (torch.tensor([-1.0, -0.5]), torch.tensor([2.0, 0.0]), 0, 255, False))


def test_compile_fullgraph_matches_eager():
    def step(x, s, z):
        return (torchqat.lsq_fake_quantize(x, s, z, -8, 7, axis=0) ** 2).sum()

    compiled = torch.compile(step, fullgraph=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 64, generator=gen)
    leaves = [t.requires_grad_() for t in (x.clone(), torch.rand(16, generator=gen) * 0.2 + 0.05, torch.zeros(16))]
    leaves_ref = [t.detach().clone().requires_grad_() for t in leaves]
    compiled(*leaves).backward()
    step(*leaves_ref).backward()
    for a, b in zip(leaves, leaves_ref):
        torch.testing.assert_close(a.grad, b.grad)


def test_learned_scale_converges_to_the_mse_optimal_scale():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, generator=gen)
    qmin, qmax = -8, 7
    zp = torch.zeros(1)
    # Brute force: the step size with the least quantization error.
    grid = torch.linspace(0.05, 0.8, 1501)
    mse = torch.stack([((torchqat.fake_quantize(x, s.reshape(1), zp, qmin, qmax) - x) ** 2).mean() for s in grid])
    best = float(grid[mse.argmin()])
    scale = torch.nn.Parameter(torchqat.lsq_init_scale(x, qmax))
    opt = torch.optim.Adam([scale], lr=0.01)
    for _ in range(400):
        loss = ((torchqat.lsq_fake_quantize(x, scale, zp, qmin, qmax, 1.0) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned_mse = ((torchqat.fake_quantize(x, scale.detach(), zp, qmin, qmax) - x) ** 2).mean()
    learned = float(scale.detach())
    assert abs(learned - best) / best < 0.05, (learned, best)
    assert learned_mse <= mse.min() * 1.02


def test_init_helpers():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, 64, generator=gen)
    s = torchqat.lsq_init_scale(w, 7, axis=0)
    torch.testing.assert_close(s, 2 * w.abs().mean(dim=1) / math.sqrt(7))
    assert torchqat.lsq_init_scale(w, 7, group_size=16).shape == (8, 4)
    assert torchqat.lsq_init_scale(w, 127).shape == (1,)
    lo, hi = w.amin(dim=1), w.amax(dim=1)
    scale, zp = torchqat.qparams_from_range(lo, hi, -128, 127, symmetric=True)
    torch.testing.assert_close(scale, torch.maximum(-lo, hi) / 127.5)
    assert zp.dtype == torch.int32 and (zp == 0).all()
    scale, zp = torchqat.qparams_from_range(torch.tensor([-1.0]), torch.tensor([3.0]), 0, 255)
    torch.testing.assert_close(scale, torch.tensor([4.0 / 255]))
    assert int(zp) == round(1.0 / (4.0 / 255))
    scale, zp = torchqat.qparams_from_range(torch.tensor([0.0]), torch.tensor([0.0]), 0, 255)
    assert float(scale) == torch.finfo(torch.float32).eps and int(zp) == 0


def test_matches_torch_ao_observer_qparams():
    obs_mod = pytest.importorskip("torch.ao.quantization.observer")
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1000, generator=gen) * 2 + 0.3
    for dtype, qscheme, qmin, qmax, symmetric in [
        (torch.quint8, torch.per_tensor_affine, 0, 255, False),
        (torch.qint8, torch.per_tensor_symmetric, -128, 127, True),
    ]:
        obs = obs_mod.MinMaxObserver(dtype=dtype, qscheme=qscheme)
        obs(x)
        ref_scale, ref_zp = obs.calculate_qparams()
        scale, zp = torchqat.qparams_from_range(obs.min_val.reshape(1), obs.max_val.reshape(1), qmin, qmax, symmetric)
        assert torch.equal(scale, ref_scale.reshape(1).float()) and int(zp) == int(ref_zp)
