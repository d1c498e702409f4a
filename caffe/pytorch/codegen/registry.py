"""Emitters: one per Caffe layer family, registered by layer type."""
from ..registry import Registry

EMITTERS = Registry("caffe.pytorch code emitters")
register = EMITTERS.register
