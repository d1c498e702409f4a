"""What the converter entry points (``from_pytorch``, ``from_onnx``,
``from_darknet``, ``to_darknet``) share as command-line tools and as
callable modules, so that each prints and exits the same way."""
import sys
import types

from .errors import ExportError, VerificationError


def run_and_report(convert, *args, **kwargs):
    """Run one conversion for a CLI; print its report (the verification table)
    or the error, and return the process exit code (0 ok, 1 refused/failed)."""
    try:
        report = convert(*args, **kwargs)
    except VerificationError as exc:
        print(exc.report if exc.report is not None else exc)
        return 1
    except ExportError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    if report is not None:
        print(report)
    return 0


def make_module_callable(module_name, function):
    """Let ``caffe.<name>(...)`` call ``function`` while ``python -m caffe.<name>``
    still runs the module as a CLI (the module's class becomes callable)."""
    class CallableModule(types.ModuleType):
        __doc__ = "``caffe.%s(...)`` calls the function; the module also runs as a CLI." % (
            module_name.rsplit(".", 1)[-1])

        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
