"""``save`` / ``load``: one file holding an exported model, readable from
Python and from C++ (``torchqat::load``, torchqat/deploy.h) without the
training code.

The program is TorchScript (``torch.jit.trace`` of the exported model): the
one format the installed torch both writes from Python and runs from LibTorch
C++ without Python (a ``torch.export`` program needs AOTInductor compilation
to run from C++). Its torchqat ops hold the packed integer weights. The file
wraps the archive with a magic, a format version, lengths and a CRC-32 over
everything, so a truncated, corrupted or foreign file is refused with a clear
error before anything in it is deserialized.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any, Dict, Tuple

import torch
from torch import nn

from .. import _C

FORMAT = "torchqat.model"


def _as_args(example_inputs) -> Tuple[tuple, Dict[str, Any]]:
    if isinstance(example_inputs, dict):
        return (), example_inputs
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    raise TypeError("torchqat.save: example_inputs must be a tensor, a tuple of positional inputs or a dict of "
                    f"keyword inputs, got {type(example_inputs).__name__}")


def _describe(t) -> Dict[str, Any]:
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} if isinstance(t, torch.Tensor) \
        else {"value": repr(t)}


def trace(exported: nn.Module, example_inputs) -> torch.jit.ScriptModule:
    """The TorchScript program of an exported model (shapes other than the
    examples' work where the model's Python does not branch on them)."""
    if not hasattr(exported, "torchqat_export_report"):
        raise TypeError("torchqat.save: expected a model from torchqat.export, got "
                        f"{type(exported).__name__} (export the QAT model first)")
    args, kwargs = _as_args(example_inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*jit.*deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if kwargs:
            return torch.jit.trace(exported, example_kwarg_inputs=kwargs, check_trace=False, strict=False)
        return torch.jit.trace(exported, args, check_trace=False, strict=False)


def save(exported: nn.Module, path: str, example_inputs) -> int:
    """Write ``exported`` (from ``torchqat.export``) to ``path`` as one file;
    ``example_inputs`` (a tensor, tuple or dict of keyword inputs) drive the
    trace. Returns the file size in bytes. An existing file at ``path`` is
    replaced only once the new one is complete."""
    program = trace(exported, example_inputs)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*jit.*deprecated")
        torch.jit.save(program, buffer)
    args, kwargs = _as_args(example_inputs)
    metadata = {
        "format": FORMAT,
        "program": "torchscript",
        "torchqat_version": _C.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "inputs": [_describe(a) for a in args] or {k: _describe(v) for k, v in kwargs.items()},
        "layers": dict(exported.torchqat_export_report.layers),
    }
    _C.write_artifact(os.fspath(path), json.dumps(metadata), buffer.getvalue())
    return os.path.getsize(path)


def read_metadata(path: str) -> Dict[str, Any]:
    """The JSON metadata of a model file (checked like ``load``)."""
    metadata, _ = _C.read_artifact(os.fspath(path))
    return json.loads(metadata)


def load(path: str) -> torch.jit.ScriptModule:
    """The model ``save`` wrote, in eval mode. Raises ValueError naming the
    problem for a truncated, corrupted, foreign or wrong-version file."""
    metadata, payload = _C.read_artifact(os.fspath(path))
    info = json.loads(metadata)
    if info.get("format") != FORMAT or info.get("program") != "torchscript":
        raise ValueError(f"torchqat.load: '{path}' holds {info.get('format')!r} / {info.get('program')!r}, not a "
                         "torchqat TorchScript model")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*jit.*deprecated")
        module = torch.jit.load(io.BytesIO(payload), map_location="cpu")
    return module.eval()
