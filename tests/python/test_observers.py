"""Min/max observers: parity with torch.ao, non-finite handling, state, DDP sync."""

import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp

import torchqat
from torchqat.observers import MinMaxObserver, MovingAverageMinMaxObserver

ao = pytest.importorskip("torch.ao.quantization.observer")

CONFIGS = [
    ("affine uint8", dict(bits=8, signed=False), MinMaxObserver,
     lambda: ao.MinMaxObserver(dtype=torch.quint8)),
    ("symmetric int8", dict(symmetric=True), MinMaxObserver,
     lambda: ao.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)),
    ("per-channel int8", dict(symmetric=True, ch_axis=0), MinMaxObserver,
     lambda: ao.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)),
    ("narrow symmetric int8", dict(symmetric=True, narrow_range=True), MinMaxObserver,
     lambda: ao.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127)),
    ("narrow per-channel int8", dict(symmetric=True, narrow_range=True, ch_axis=0), MinMaxObserver,
     lambda: ao.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                         quant_min=-127, quant_max=127)),
    ("moving affine uint8", dict(bits=8, signed=False), MovingAverageMinMaxObserver,
     lambda: ao.MovingAverageMinMaxObserver(dtype=torch.quint8)),
    ("moving symmetric int8", dict(symmetric=True), MovingAverageMinMaxObserver,
     lambda: ao.MovingAverageMinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)),
    ("moving per-channel int8", dict(symmetric=True, ch_axis=1), MovingAverageMinMaxObserver,
     lambda: ao.MovingAveragePerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name,kwargs,cls,make_ref", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_qparams_match_torch_ao(isa, seed, name, kwargs, cls, make_ref):
    gen = torch.Generator().manual_seed(seed)
    ours, ref = cls(**kwargs), make_ref()
    for i in range(6):
        batch = torch.randn(24, 40, generator=gen) * (1 + i) + 0.2 * i
        ours(batch)
        ref(batch)
    scale, zp = ours.calculate_qparams()
    ref_scale, ref_zp = ref.calculate_qparams()
    assert torch.equal(scale, ref_scale.float().reshape(scale.shape))
    assert torch.equal(zp, ref_zp.int().reshape(zp.shape))
    torch.testing.assert_close(ours.min_val, ref.min_val.reshape(ours.min_val.shape), rtol=0, atol=0)


@pytest.mark.parametrize("shape,kw,stat_shape", [
    ((1000,), {}, ()),
    ((64, 300), dict(ch_axis=0), (64,)),
    ((8, 16, 5, 5), dict(ch_axis=1), (16,)),
    ((12, 256), dict(group_size=32), (12, 8)),
    ((3_000_001,), {}, ()),
])
def test_statistics_match_reductions(isa, shape, kw, stat_shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    obs = MinMaxObserver(**kw)
    obs(x)
    assert obs.min_val.shape == stat_shape
    if "ch_axis" in kw:
        flat = x.movedim(kw["ch_axis"], 0).reshape(x.shape[kw["ch_axis"]], -1)
        lo, hi = flat.amin(1), flat.amax(1)
    elif "group_size" in kw:
        g = x.reshape(*x.shape[:-1], -1, kw["group_size"])
        lo, hi = g.amin(-1), g.amax(-1)
    else:
        lo, hi = x.min(), x.max()
    assert torch.equal(obs.min_val, lo) and torch.equal(obs.max_val, hi)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(isa, dtype):
    x = torch.randn(50, 70).to(dtype)
    obs = MinMaxObserver(ch_axis=1)
    obs(x)
    assert torch.equal(obs.min_val, x.float().amin(0)) and torch.equal(obs.max_val, x.float().amax(0))


def test_nonfinite_values_are_skipped_counted_and_warned_once(isa):
    x = torch.randn(4, 100)
    x[0, 3], x[1, 7], x[2, 9] = float("nan"), float("inf"), -float("inf")
    obs = MovingAverageMinMaxObserver(ch_axis=0)
    with pytest.warns(UserWarning, match="skipped 3 non-finite values"):
        obs(x)
    assert int(obs.num_nonfinite) == 3
    finite = torch.where(x.isfinite(), x, torch.nan)
    assert torch.equal(obs.min_val, finite.nan_to_num(float("inf")).amin(1))
    assert torch.isfinite(obs.calculate_qparams()[0]).all()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs(x)  # no second warning
    assert int(obs.num_nonfinite) == 6
    # A channel with nothing finite in a batch keeps its range.
    before = obs.min_val.clone()
    y = torch.randn(4, 100)
    y[2] = float("nan")
    obs(y)
    assert obs.min_val[2] == before[2]


def test_empty_tensor_is_a_no_op_and_qparams_need_data():
    obs = MinMaxObserver()
    obs(torch.empty(0, 3))
    with pytest.raises(RuntimeError, match=r"calculate_qparams\(\) called before any \(finite\) observation"):
        obs.calculate_qparams()
    per_channel = MinMaxObserver(ch_axis=0)
    with pytest.raises(RuntimeError, match="before any"):
        per_channel.calculate_qparams()
    with pytest.warns(UserWarning, match="skipped 5 non-finite"):
        obs(torch.full((5,), float("nan")))
    with pytest.raises(RuntimeError, match="before any"):
        obs.calculate_qparams()


def test_zero_is_exactly_representable():
    obs = MinMaxObserver(bits=8, signed=False)
    obs(torch.rand(100) + 1.0)  # all positive: the range is widened to hold 0
    scale, zp = obs.calculate_qparams()
    assert float(obs.min_val) > 0 and int(zp) == 0
    assert torchqat.fake_quantize(torch.zeros(1), scale, zp, 0, 255).item() == 0.0


def test_state_dict_round_trip():
    obs = MovingAverageMinMaxObserver(ch_axis=0, symmetric=True, averaging_constant=0.1)
    for _ in range(3):
        obs(torch.randn(8, 20))
    fresh = MovingAverageMinMaxObserver(ch_axis=0, symmetric=True, averaging_constant=0.1)
    fresh.load_state_dict(obs.state_dict())
    for a, b in zip(obs.calculate_qparams(), fresh.calculate_qparams()):
        assert torch.equal(a, b)
    batch = torch.randn(8, 20)
    obs(batch)
    fresh(batch)
    assert torch.equal(obs.min_val, fresh.min_val)


def test_bad_arguments():
    with pytest.raises(ValueError, match="not both"):
        MinMaxObserver(ch_axis=0, group_size=32)
    with pytest.raises(ValueError, match=r"averaging_constant must be in \(0, 1\]"):
        MovingAverageMinMaxObserver(averaging_constant=0.0)
    with pytest.raises(ValueError, match="bits must be in"):
        MinMaxObserver(bits=1)
    obs = MinMaxObserver(ch_axis=0)
    obs(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"statistics have shape \(4,\) but this input gives \(6,\)"):
        obs(torch.randn(6, 5))
    with pytest.raises(RuntimeError, match="x must be a float32"):
        MinMaxObserver()(torch.ones(3, dtype=torch.int64))


def _ddp_worker(rank, world, init_file, results):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    gen = torch.Generator().manual_seed(100 + rank)
    obs = MinMaxObserver(ch_axis=0, symmetric=True)
    obs(torch.randn(6, 50, generator=gen) * (rank + 1))
    obs.sync()
    scale, zp = obs.calculate_qparams()
    results[rank] = (scale.clone(), zp.clone())
    dist.destroy_process_group()


def test_ddp_sync_gives_every_rank_the_same_qparams():
    world = 2
    with tempfile.TemporaryDirectory() as d:
        manager = mp.Manager()
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(world, os.path.join(d, "init"), results), nprocs=world, join=True)
        # The same as one observer that saw both ranks' data.
        single = MinMaxObserver(ch_axis=0, symmetric=True)
        for rank in range(world):
            gen = torch.Generator().manual_seed(100 + rank)
            single(torch.randn(6, 50, generator=gen) * (rank + 1))
        expected = single.calculate_qparams()
        for rank in range(world):
            assert torch.equal(results[rank][0], expected[0]) and torch.equal(results[rank][1], expected[1])


FUSED_CASES = [
    ((64, 40), {}, ()),
    ((16, 8, 6, 6), dict(axis=1), (8,)),
    ((12, 128), dict(group_size=32), (12, 4)),
]


@pytest.mark.parametrize("shape,gran,stat_shape", FUSED_CASES)
@pytest.mark.parametrize("averaging_constant", [None, 0.1])
def test_fused_op_equals_observer_then_fake_quantize(isa, shape, gran, stat_shape, averaging_constant):
    gen = torch.Generator().manual_seed(0)
    lo, hi = torch.full(stat_shape, float("inf")), torch.full(stat_shape, float("-inf"))
    kw = dict(ch_axis=gran.get("axis"), group_size=gran.get("group_size"), bits=8, signed=False)
    obs = MinMaxObserver(**kw) if averaging_constant is None else MovingAverageMinMaxObserver(averaging_constant, **kw)
    for step in range(4):
        x = (torch.randn(shape, generator=gen) * (step + 1)).requires_grad_()
        y = torchqat.observe_fake_quantize(x, lo, hi, 0, 255, False, averaging_constant, **gran)
        obs(x)
        scale, zp = obs.calculate_qparams()
        ref = torchqat.fake_quantize(x.detach(), scale, zp, 0, 255, axis=gran.get("axis"), group_size=gran.get("group_size"))
        assert torch.equal(lo, obs.min_val) and torch.equal(hi, obs.max_val)
        assert torch.equal(y, ref)
        g = torch.randn(shape, generator=gen)
        y.backward(g)
        in_range = ref.detach() == torchqat.fake_quantize(x.detach(), scale, zp, -(2**20), 2**20, axis=gran.get("axis"), group_size=gran.get("group_size"))
        assert torch.equal(x.grad, torch.where(in_range, g, 0.0))


def test_fused_op_switches():
    x = torch.randn(100) * 3
    lo, hi = torch.full((), float("inf")), torch.full((), float("-inf"))
    torchqat.observe_fake_quantize(x, lo, hi, -128, 127, True)
    frozen = (lo.clone(), hi.clone())
    y = torchqat.observe_fake_quantize(x * 10, lo, hi, -128, 127, True, observe=False)
    assert torch.equal(lo, frozen[0]) and torch.equal(hi, frozen[1])
    assert y.abs().max() <= torch.maximum(-lo, hi) * 1.01  # clamped to the frozen range
    x2 = torch.randn(100, requires_grad=True)
    y2 = torchqat.observe_fake_quantize(x2, lo, hi, -128, 127, True, fake_quant=False)
    assert torch.equal(y2, x2)
    y2.sum().backward()
    assert torch.equal(x2.grad, torch.ones(100))
    with torch.inference_mode():
        torchqat.observe_fake_quantize(torch.randn(10), lo, hi, -128, 127, True)
    with pytest.raises(RuntimeError, match=r"min_val and max_val must be float32 with one value per statistic \(4"):
        torchqat.observe_fake_quantize(torch.randn(4, 3), lo, hi, -128, 127, True, axis=0)
    with pytest.raises(RuntimeError, match=r"averaging_constant must be in \(0, 1\]"):
        torchqat.observe_fake_quantize(x, lo, hi, -128, 127, True, 2.0)


def test_fused_op_opcheck_and_compile():
    lo, hi = torch.full((8,), float("inf")), torch.full((8,), float("-inf"))
    x = torch.randn(8, 30)
    torch.library.opcheck(torch.ops.torchqat.observe_fake_quantize_forward.default,
                          (x, lo.clone(), hi.clone(), -128, 127, True, 0.01, True, True, 0, None))
    torch.library.opcheck(torch.ops.torchqat.observe_fake_quantize.default,
                          (x.clone().requires_grad_(), lo.clone(), hi.clone(), -128, 127, True, None, True, True, 0, None))

    def step(x, lo, hi):
        return torchqat.observe_fake_quantize(x, lo, hi, -128, 127, True, 0.01, axis=0).square().sum()

    lo_c, hi_c = lo.clone(), hi.clone()
    xc = x.clone().requires_grad_()
    torch.compile(step, fullgraph=True)(xc, lo_c, hi_c).backward()
    xe = x.clone().requires_grad_()
    step(xe, lo, hi).backward()
    assert torch.equal(lo_c, lo) and torch.equal(hi_c, hi)
    torch.testing.assert_close(xc.grad, xe.grad)


def test_observe_minmax_opcheck():
    x = torch.randn(6, 32)
    for axis, group in ((None, None), (0, None), (-1, None), (None, 8)):
        torch.library.opcheck(torch.ops.torchqat.observe_minmax.default, (x, axis, group))


from torchqat.observers import HistogramObserver  # noqa: E402


def quant_mse(x, scale, zp, qmin, qmax):
    return float(((torchqat.fake_quantize(x, scale.float().reshape(1), zp.int().reshape(1), qmin, qmax) - x) ** 2).mean())


HEAVY_TAILED = {
    "laplace": lambda g: torch.distributions.Laplace(0.0, 1.0).sample((6, 50_000)),
    "student-t": lambda g: torch.distributions.StudentT(3.0).sample((6, 50_000)),
    "post-relu": lambda g: torch.relu(torch.randn(6, 50_000, generator=g) * 2 + 0.5),
}


@pytest.mark.parametrize("data", HEAVY_TAILED, ids=list(HEAVY_TAILED))
@pytest.mark.parametrize("bits", [8, 4])
def test_mse_method_beats_torch_histogram_and_minmax(data, bits):
    torch.manual_seed(0)
    batches = HEAVY_TAILED[data](torch.Generator().manual_seed(0))
    qmin, qmax = 0, 2**bits - 1
    ours = HistogramObserver(method="mse", bits=bits, signed=False)
    theirs = ao.HistogramObserver(dtype=torch.quint8, quant_min=qmin, quant_max=qmax)
    minmax = MinMaxObserver(bits=bits, signed=False)
    for b in batches:
        ours(b)
        theirs(b)
        minmax(b)
    x = batches.flatten()
    e_ours = quant_mse(x, *ours.calculate_qparams(), qmin, qmax)
    e_theirs = quant_mse(x, *theirs.calculate_qparams(), qmin, qmax)
    e_minmax = quant_mse(x, *minmax.calculate_qparams(), qmin, qmax)
    assert e_ours <= e_theirs * 1.001, (e_ours, e_theirs)
    # Much better than min/max on heavy tails; post-ReLU Gaussian data has light
    # tails, where clipping buys less (about 9% at 8 bits).
    assert e_ours < (0.95 if data == "post-relu" else 0.85) * e_minmax, (e_ours, e_minmax)


@pytest.mark.parametrize("method", ["percentile", "mse", "entropy"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_histogram_methods_give_ranges_holding_zero(method, symmetric):
    obs = HistogramObserver(bins=512, method=method, symmetric=symmetric)
    gen = torch.Generator().manual_seed(1)
    for i in range(3):
        obs(torch.randn(10_000, generator=gen) * (i + 1) + 0.5)
    lo, hi = obs.clip_range()
    assert lo <= 0 <= hi and hi - lo > 0
    scale, zp = obs.calculate_qparams()
    assert scale.shape == (1,) and zp.dtype == torch.int32
    assert int(obs.counts.sum()) == 30_000


def test_percentile_holds_the_mass():
    obs = HistogramObserver(method="percentile", percentile=99.0, symmetric=True)
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    obs(x)
    lo, hi = obs.clip_range()
    inside = float(((x >= lo) & (x <= hi)).float().mean())
    assert 0.989 <= inside <= 0.992
    torch.testing.assert_close(hi, float(x.abs().quantile(0.99)), rtol=0.01, atol=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_running_histogram_equals_one_histogram_of_all_batches(threads):
    # Batches inside the current range take the one-pass path, wider ones widen
    # and re-insert; either way the counts equal a histogram of every value seen
    # over the final range (widening merges whole bins).
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(200_000, generator=gen) * s for s in (1.0, 0.5, 4.0, 1.0, 9.0)]
    counts, rng = torch.zeros(1024, dtype=torch.long), torch.zeros(2, dtype=torch.double)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for b in batches:
            torch.ops.torchqat.histogram_observe(b, counts, rng)
    finally:
        torch.set_num_threads(before)
    lo, hi = rng.tolist()
    x = torch.cat(batches).double()
    assert lo <= float(x.min()) and float(x.max()) < hi
    idx = ((x - lo) * (1024 / (hi - lo))).floor().long().clamp(0, 1023)
    assert torch.equal(counts, torch.bincount(idx, minlength=1024))


def test_histogram_state_nonfinite_and_errors():
    obs = HistogramObserver(bins=128, method="mse")
    with pytest.raises(RuntimeError, match="before any"):
        obs.calculate_qparams()
    obs(torch.empty(0))
    x = torch.randn(1000)
    x[5] = float("nan")
    with pytest.warns(UserWarning, match="skipped 1 non-finite"):
        obs(x)
    assert int(obs.num_nonfinite) == 1 and int(obs.counts.sum()) == 999
    obs(torch.randn(1000) * 10)  # the range grows, no count is lost
    assert int(obs.counts.sum()) == 1999
    fresh = HistogramObserver(bins=128, method="mse")
    fresh.load_state_dict(obs.state_dict())
    assert obs.clip_range() == fresh.clip_range()
    with pytest.raises(ValueError, match='method must be "percentile", "mse" or "entropy"'):
        HistogramObserver(method="kl")
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
        HistogramObserver(percentile=0)


def _ddp_histogram_worker(rank, world, init_file, results):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    obs = HistogramObserver(bins=256, method="mse")
    obs(torch.randn(20_000, generator=torch.Generator().manual_seed(rank)) * (rank + 1))
    obs.sync()
    results[rank] = (obs.calculate_qparams(), int(obs.counts.sum()))
    dist.destroy_process_group()


def test_histogram_ddp_sync():
    with tempfile.TemporaryDirectory() as d:
        results = mp.Manager().dict()
        mp.spawn(_ddp_histogram_worker, args=(2, os.path.join(d, "init"), results), nprocs=2, join=True)
        (q0, n0), (q1, n1) = results[0], results[1]
        assert n0 == n1 == 40_000
        assert torch.equal(q0[0], q1[0]) and torch.equal(q0[1], q1[1])
