"""Deployment: a QAT model folded into integer kernels (``export``), written to and
read from one checked file (``save`` / ``load``), or written as a standard QDQ
ONNX model (``export_onnx``)."""

from .artifact import load, read_metadata, save
from .convert import ExportReport, export
from .onnx import export_onnx

__all__ = ["ExportReport", "export", "export_onnx", "load", "read_metadata", "save"]
