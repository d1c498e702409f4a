"""Moved to :mod:`caffe.data.db` (the layers and the tools share it); this
name stays importable for existing code."""
from ..data.db import _LMDB, BACKENDS, DB, Cursor, DBError, Transaction, _LevelDB, open_db  # noqa: F401
