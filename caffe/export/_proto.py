"""The active caffe_pb2 module (protoio.schema() on main; pb2() before that refactor)."""


def pb2():
    from .. import protoio
    return (getattr(protoio, "schema", None) or getattr(protoio, "pb2"))()
