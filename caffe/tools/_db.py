"""Moved to :mod:`caffe.data.db` (the layers and the tools share it); this
name stays importable for existing code."""
from ..data.db import (BACKENDS, DB, Cursor, DBError, Transaction, open_db,  # noqa: F401
                       _LevelDB, _LMDB)
