"""Exporters to Caffe: PyTorch (torch.export ATen graph) and ONNX front ends.

Layout: ``emitters/`` write Caffe layers (one module per layer family);
``mappers/`` turn ATen ops into emitter calls (one module per op family);
``builder.NetBuilder`` holds the net being written; ``verify`` runs the written
files with ``caffe.Net`` and compares blobs via :mod:`caffe.verification`.
Public entry points: :func:`caffe.from_pytorch` and :func:`caffe.from_onnx`.
"""
from .errors import ExportError, UnsupportedOpError, VerificationError  # noqa: F401
from .report import ExportReport  # noqa: F401
