"""Op registries: source op name -> mapper function, raising on duplicates and unknowns.

One :class:`OpRegistry` per front end (ATen ops for PyTorch, node types for
ONNX).  Mapper modules register themselves with the ``@REGISTRY.register(...)``
decorator; the exporter looks ops up and gets a clear error for anything
unregistered.
"""


class OpRegistry:
    def __init__(self, what):
        self.what = what
        self._mappers = {}

    def register(self, *names):
        def deco(fn):
            for name in names:
                if name in self._mappers:
                    raise KeyError("%s %r is registered twice (%s and %s)" % (
                        self.what, name, self._mappers[name].__module__, fn.__module__))
                self._mappers[name] = fn
            return fn
        return deco

    def get(self, name):
        """The mapper for ``name`` or None (the caller raises with context)."""
        return self._mappers.get(name)

    def names(self):
        return sorted(self._mappers)

    def __contains__(self, name):
        return name in self._mappers
