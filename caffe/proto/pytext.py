"""The text form ``str(message)`` gave under pycaffe's protobuf.

pycaffe users (and net_spec's golden output) see floats printed as Python's
``str`` of the float32 value widened to double (``lr_mult: 1.0``,
``scale: 0.003921568859368563``); current protobuf prints the shortest
float32 form instead (``lr_mult: 1``).  This printer reproduces the pycaffe-era
text, field by field in field-number order, and is installed as ``__str__`` of
every message class of the schema modules this package hands out.
"""
from google.protobuf import text_encoding
from google.protobuf.descriptor import FieldDescriptor

_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)


def _scalar(field, value):
    cpp = field.cpp_type
    if cpp in _FLOATS:
        return str(float(value))
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return "true" if value else "false"
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else str(value)
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if isinstance(value, str):
            value = value.encode("utf-8")
        return '"%s"' % text_encoding.CEscape(value, False)
    return str(value)


def is_repeated(field):
    """Whether a field is repeated, across protobuf versions (``label`` went away)."""
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return flag() if callable(flag) else bool(flag)
    return field.label == FieldDescriptor.LABEL_REPEATED


def _write(message, out, indent):
    pad = " " * indent
    for field, value in message.ListFields():
        name = field.name
        if field.is_extension:
            name = "[%s]" % field.full_name
        values = value if is_repeated(field) else [value]
        for v in values:
            if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                out.append("%s%s {\n" % (pad, name))
                _write(v, out, indent + 2)
                out.append("%s}\n" % pad)
            else:
                out.append("%s%s: %s\n" % (pad, name, _scalar(field, v)))


def to_text(message):
    out = []
    _write(message, out, 0)
    return "".join(out)


def install(module):
    """Make ``str()`` of every message class in a generated module print pycaffe's text."""
    def visit(cls):
        try:
            cls.__str__ = to_text
        except (AttributeError, TypeError):
            return
        for nested in cls.DESCRIPTOR.nested_types:
            sub = getattr(cls, nested.name, None)
            if sub is not None:
                visit(sub)
    for name in module.DESCRIPTOR.message_types_by_name:
        visit(getattr(module, name))
    return module
