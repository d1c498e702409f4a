"""Errors of the exporters: every refusal names the op, where it came from, and why."""


class ExportError(ValueError):
    """A model (or one of its ops) cannot be written as a Caffe net."""


class UnsupportedOpError(ExportError):
    """An op has no Caffe equivalent (or not with these arguments).

    Carries the op, the module path (``layer3.1.conv2``) and the user's source
    line so the message points at the line to change, plus what *is* supported.
    """

    def __init__(self, op, reason, module_path="", source="", supported=()):
        self.op = op
        self.reason = reason
        self.module_path = module_path
        self.source = source
        self.supported = tuple(supported)
        where = "module '%s'" % module_path if module_path else "the top-level forward"
        lines = ["cannot export op %s in %s: %s" % (op, where, reason)]
        if source:
            lines.append("  at %s" % source)
        if self.supported:
            lines.append("  supported ops: %s" % ", ".join(self.supported))
        super().__init__("\n".join(lines))


class VerificationError(ExportError):
    """The written Caffe net does not reproduce the PyTorch outputs within tolerance."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report
