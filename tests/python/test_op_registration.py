"""The ops as torch sees them: opcheck, torch.compile(fullgraph=True), torch.export."""

import pytest
import torch

import torchqat

ops = torch.ops.torchqat


def affine_samples():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 4, generator=gen)
    yield (x, torch.tensor([0.05]), torch.tensor([2], dtype=torch.int32), -128, 127, None, None)
    yield (x, torch.rand(5) + 0.01, torch.zeros(5, dtype=torch.int32), 0, 255, 1, None)
    yield (x, torch.rand(6, 5, 2) + 0.01, torch.zeros(6, 5, 2, dtype=torch.int32), -8, 7, None, 2)
    yield (x.half(), torch.tensor([0.05]), torch.tensor([0], dtype=torch.int32), -128, 127, None, None)


@pytest.mark.parametrize("args", list(affine_samples()))
def test_opcheck_fake_quantize(args):
    x = args[0].clone().requires_grad_()
    torch.library.opcheck(ops.fake_quantize.default, (x, *args[1:]))
    torch.library.opcheck(ops.fake_quantize_forward.default, args)


def test_opcheck_fp8_and_backward():
    x = torch.randn(3, 17)
    torch.library.opcheck(ops.fake_quantize_fp8.default, (x.clone().requires_grad_(), torch.tensor([0.1]), "e4m3", None, None))
    torch.library.opcheck(ops.fake_quantize_fp8_forward.default, (x, torch.rand(3) + 0.1, "e5m2", 0, None))
    _, mask = ops.fake_quantize_forward(x, torch.tensor([0.01]), torch.tensor([0]), -128, 127)
    torch.library.opcheck(ops.ste_backward.default, (torch.randn(3, 17), mask))


def test_compile_fullgraph_matches_eager():
    scale = torch.rand(16) * 0.05 + 0.01
    zp = torch.zeros(16, dtype=torch.int32)

    def step(w, x):
        wq = torchqat.fake_quantize(w, scale, zp, -127, 127, axis=0)
        xq = torchqat.fake_quantize_fp8(x, torch.tensor([0.02]), "e4m3")
        return torch.nn.functional.relu(xq @ wq.t()).sum()

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    w = torch.randn(16, 32, requires_grad=True)
    x = torch.randn(8, 32, requires_grad=True)
    w2, x2 = w.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    loss = compiled(w, x)
    loss.backward()
    loss_ref = step(w2, x2)
    loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(w.grad, w2.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_compile_with_dynamic_shapes():
    def fq(x):
        return torchqat.fake_quantize(x, torch.tensor([0.1]), torch.tensor([0]), -128, 127) * 2

    compiled = torch.compile(fq, fullgraph=True, dynamic=True)
    for n in (10, 17, 33):
        x = torch.randn(n, 3)
        assert torch.equal(compiled(x), fq(x))


class FakeQuantLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(12, 6)
        self.register_buffer("w_scale", torch.rand(6) * 0.02 + 0.01)
        self.register_buffer("w_zp", torch.zeros(6, dtype=torch.int32))

    def forward(self, x):
        xq = torchqat.fake_quantize(x, torch.tensor([0.05]), torch.tensor([128]), 0, 255)
        wq = torchqat.fake_quantize(self.linear.weight, self.w_scale, self.w_zp, -127, 127, axis=0)
        return torch.nn.functional.linear(xq, wq, self.linear.bias)


def test_torch_export_keeps_the_op():
    model = FakeQuantLinear().eval()
    x = torch.randn(4, 12)
    exported = torch.export.export(model, (x,))
    assert "torchqat.fake_quantize" in str(exported.graph)
    assert torch.equal(exported.module()(x), model(x))
