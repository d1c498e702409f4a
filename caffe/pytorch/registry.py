"""A small name -> entry registry that refuses duplicates and names unknowns.

Used for the per-layer-type tables of this package (parameter names, phase
switches, code emitters) so that adding a layer family is one registration and
a typo or a second registration fails loudly instead of being shadowed.
"""


class Registry:
    def __init__(self, what):
        self.what = what
        self._entries = {}

    def register(self, *keys):
        """Decorator: ``@reg.register("Convolution", "Deconvolution")``."""
        def deco(entry):
            for key in keys:
                self.add(key, entry)
            return entry
        return deco

    def add(self, key, entry):
        if key in self._entries:
            raise ValueError("%s: %r is already registered (by %r)"
                             % (self.what, key, self._entries[key]))
        self._entries[key] = entry

    def get(self, key, default=None):
        return self._entries.get(key, default)

    def lookup(self, key, where=""):
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError("%s%s: no entry for layer type %r (known: %s)"
                           % (where + ": " if where else "", self.what, key,
                              ", ".join(sorted(self._entries)))) from None

    def __contains__(self, key):
        return key in self._entries

    def keys(self):
        return sorted(self._entries)
