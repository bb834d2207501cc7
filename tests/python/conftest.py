import pytest
import torch

import torchqat

ALL_ISAS = ["scalar", "avx2", "avx512"]


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """Run the test once per CPU kernel variant; skip (and say so) the ones this CPU lacks."""
    name = request.param
    if name not in torchqat._C.supported_isas():
        pytest.skip(f"this CPU cannot run the {name} kernels")
    previous = torchqat._C.active_isa()
    torchqat._C.set_isa(name)
    yield name
    torchqat._C.set_isa(previous)


def cuda_or_skip():
    if not torchqat._C.cuda_compiled:
        pytest.skip("torchqat was built without CUDA")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: CUDA kernels compiled but not run")
    return torch.device("cuda")


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda":
        return cuda_or_skip()
    return torch.device("cpu")
