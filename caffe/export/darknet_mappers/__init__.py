"""Darknet section -> Caffe layer mappers, one module per section family."""
from ..registry import OpRegistry

SECTIONS = OpRegistry("Darknet section")

from . import conv, detection, pool, route  # noqa: E402,F401
