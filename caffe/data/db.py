"""Key/value databases of serialized records (LMDB, LevelDB), modelled on
Caffe's ``caffe::db`` (``DB`` / ``Cursor`` / ``Transaction``).

    db = open_db(path, backend='lmdb', mode='r')   # 'r' read, 'w' new, 'a' write
    for key, value in db:                            # bytes, in key order
        ...
    cur = db.cursor()                                # Caffe-style cursor
    while cur.valid():
        cur.key(); cur.value(); cur.next()
    cur.seek_to_first()                              # wrap around

    db = open_db(path, 'lmdb', 'w')                  # NEW: must not exist
    txn = db.transaction(); txn.put(key, value); txn.commit()
    db.close()

Modes follow Caffe: ``'r'`` (READ) opens an existing database read-only,
``'w'`` (NEW) creates one and fails if it already exists, ``'a'`` (WRITE)
opens or creates one for writing.  Keys and values are ``bytes`` (``str``
is accepted for keys and encoded as UTF-8).
"""
import os

__all__ = ['open_db', 'DB', 'Cursor', 'Transaction', 'DBError', 'BACKENDS']

BACKENDS = ('lmdb', 'leveldb')

_MODES = {
    'r': 'r', 'read': 'r', 'READ': 'r',
    'w': 'w', 'new': 'w', 'NEW': 'w',
    'a': 'a', 'write': 'a', 'WRITE': 'a',
}


class DBError(RuntimeError):
    """Raised for a database that cannot be opened or a missing backend."""


def _as_bytes(k):
    if isinstance(k, str):
        return k.encode('utf-8')
    return bytes(k)


def _normalize_backend(backend):
    b = str(backend).lower()
    if b in ('lmdb', '1'):
        return 'lmdb'
    if b in ('leveldb', '0'):
        return 'leveldb'
    raise DBError('Unknown database backend {!r} (expected one of: {})'
                  .format(backend, ', '.join(BACKENDS)))


def _normalize_mode(mode):
    try:
        return _MODES[mode]
    except KeyError:
        raise DBError("Unknown database mode {!r} (use 'r', 'w' or 'a')"
                      .format(mode)) from None


def open_db(path, backend='lmdb', mode='r'):
    """Open the database at ``path``; see the module docstring."""
    backend = _normalize_backend(backend)
    mode = _normalize_mode(mode)
    path = os.fspath(path)
    if backend == 'lmdb':
        return _LMDB(path, mode)
    return _LevelDB(path, mode)


class Cursor:
    """Caffe-style cursor: ``valid()``, ``key()``, ``value()``, ``next()``,
    ``seek_to_first()``.  Starts on the first record.  Iterating yields
    ``(key, value)`` from the current position to the end."""

    def valid(self):
        raise NotImplementedError

    def key(self):
        raise NotImplementedError

    def value(self):
        raise NotImplementedError

    def next(self):
        raise NotImplementedError

    def seek_to_first(self):
        raise NotImplementedError

    def close(self):
        pass

    # Caffe spellings
    SeekToFirst = seek_to_first
    Next = next

    def __iter__(self):
        while self.valid():
            yield self.key(), self.value()
            self.next()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Transaction:
    """Buffered writes: ``put(key, value)`` then ``commit()``."""

    def __init__(self, db):
        self._db = db
        self._items = []

    def put(self, key, value):
        self._items.append((_as_bytes(key), bytes(value)))

    def __len__(self):
        return len(self._items)

    def commit(self):
        items, self._items = self._items, []
        self._db._write(items)

    Put = put
    Commit = commit

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.commit()


class DB:
    """Common interface of the backends."""

    backend = None

    def __init__(self, path, mode):
        self.path = path
        self.mode = mode

    def cursor(self):
        raise NotImplementedError

    def transaction(self):
        if self.mode == 'r':
            raise DBError('database {} was opened read-only'.format(self.path))
        return Transaction(self)

    def put(self, key, value):
        """Write one record immediately (a one-item transaction)."""
        txn = self.transaction()
        txn.put(key, value)
        txn.commit()

    def get(self, key):
        raise NotImplementedError

    def _write(self, items):
        raise NotImplementedError

    def close(self):
        pass

    def __iter__(self):
        cur = self.cursor()
        try:
            for kv in cur:
                yield kv
        finally:
            cur.close()

    def keys(self):
        return [k for k, _ in self]

    def __len__(self):
        return sum(1 for _ in self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Caffe spellings
    NewCursor = cursor
    NewTransaction = transaction
    Close = close


# ---------------------------------------------------------------------------
# LMDB
# ---------------------------------------------------------------------------

class _LMDBCursor(Cursor):
    def __init__(self, env):
        self._txn = env.begin(write=False, buffers=False)
        self._cur = self._txn.cursor()
        self._valid = self._cur.first()

    def valid(self):
        return self._valid

    def key(self):
        return self._cur.key()

    def value(self):
        return self._cur.value()

    def next(self):
        self._valid = self._cur.next()

    def seek_to_first(self):
        self._valid = self._cur.first()

    SeekToFirst = seek_to_first
    Next = next

    def close(self):
        if self._txn is not None:
            self._cur.close()
            self._txn.abort()
            self._txn = None


class _LMDB(DB):
    backend = 'lmdb'
    _INITIAL_MAP = 1 << 30

    def __init__(self, path, mode):
        super().__init__(path, mode)
        from .._extras import MissingExtraError, require
        try:
            lmdb = require('lmdb', 'the lmdb backend')
        except MissingExtraError as exc:
            raise DBError(str(exc)) from None
        self._lmdb = lmdb
        if mode == 'w':
            # Caffe mkdir()s the database and fails when it exists
            try:
                os.mkdir(path, 0o744)
            except FileExistsError:
                raise DBError('mkdir {} failed: the database already exists'
                              .format(path)) from None
        elif mode == 'r':
            if not os.path.isdir(path):
                raise DBError('cannot open lmdb {}: no such directory'
                              .format(path))
        try:
            if mode == 'r':
                # no lock file: reading never writes into the database
                # folder (read-only media, data shipped in a repository)
                self._env = lmdb.open(path, readonly=True, lock=False,
                                      readahead=False)
            else:
                size = max(self._INITIAL_MAP, _lmdb_used_size(path))
                self._env = lmdb.open(path, map_size=size, subdir=True)
        except lmdb.Error as e:
            raise DBError('cannot open lmdb {}: {}'.format(path, e)) from e

    def cursor(self):
        return _LMDBCursor(self._env)

    def get(self, key):
        with self._env.begin(write=False) as txn:
            return txn.get(_as_bytes(key))

    def _write(self, items):
        lmdb = self._lmdb
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for k, v in items:
                        txn.put(k, v)
                return
            except lmdb.MapFullError:
                # as Caffe's DoubleMapSize(): grow and retry the whole commit
                self._env.set_mapsize(self._env.info()['map_size'] * 2)

    def __len__(self):
        return self._env.stat()['entries']

    def close(self):
        if getattr(self, '_env', None) is not None:
            self._env.close()
            self._env = None


def _lmdb_used_size(path):
    f = os.path.join(path, 'data.mdb')
    try:
        return os.path.getsize(f) * 2
    except OSError:
        return 0


# ---------------------------------------------------------------------------
# LevelDB (through plyvel, optional)
# ---------------------------------------------------------------------------

class _LevelDBCursor(Cursor):
    def __init__(self, db):
        self._snap = db.snapshot()
        self._it = self._snap.raw_iterator()
        self._it.seek_to_first()

    def valid(self):
        return self._it.valid()

    def key(self):
        return self._it.key()

    def value(self):
        return self._it.value()

    def next(self):
        self._it.next()

    def seek_to_first(self):
        self._it.seek_to_first()

    SeekToFirst = seek_to_first
    Next = next

    def close(self):
        if self._it is not None:
            self._it.close()
            self._snap.close()
            self._it = None


class _LevelDB(DB):
    backend = 'leveldb'

    def __init__(self, path, mode):
        super().__init__(path, mode)
        from .._extras import MissingExtraError, require
        try:
            plyvel = require('plyvel', 'the leveldb backend')
        except MissingExtraError as exc:
            raise DBError('%s; or use -backend lmdb' % exc) from None
        try:
            # Caffe's options: 64 KiB blocks, 256 MiB write buffer
            self._db = plyvel.DB(path, create_if_missing=(mode != 'r'),
                                 error_if_exists=(mode == 'w'),
                                 block_size=65536,
                                 write_buffer_size=268435456,
                                 max_open_files=100)
        except Exception as e:
            raise DBError('Failed to open leveldb {}: {}'.format(path, e)) from e

    def cursor(self):
        return _LevelDBCursor(self._db)

    def get(self, key):
        return self._db.get(_as_bytes(key))

    def _write(self, items):
        with self._db.write_batch() as wb:
            for k, v in items:
                wb.put(k, v)

    def close(self):
        if getattr(self, '_db', None) is not None:
            self._db.close()
            self._db = None
