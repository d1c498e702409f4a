"""Crash-safe file writes: every file the package writes goes through here.

The data goes to a temporary file in the target's directory, is flushed and
fsynced, and only then renamed over the final name, so a crash or ``kill -9``
at any moment leaves either the old complete file or the new complete file
under that name -- never a truncated one.
"""
import contextlib
import os
import tempfile


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:           # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    For writers that want a file name (h5py, torch.save, zipfile, cv2).  On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".partial",
                               dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _keep_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def atomic_open(path, mode="wb", **kwargs):
    """``open(path, mode)`` whose result appears under ``path`` only when complete."""
    if "w" not in mode:
        raise ValueError("atomic_open writes whole files; mode %r has no 'w'" % mode)
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a not-yet-existing temporary path next to ``path`` for a writer that
    creates a whole folder (LMDB, LevelDB); renamed to ``path`` on success,
    removed on failure.  ``path`` itself must not exist (Caffe's tools refuse
    to write into an existing database too)."""
    import shutil
    path = os.fspath(path).rstrip(os.sep) or os.sep
    if os.path.exists(path):
        raise FileExistsError("%s already exists" % path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".partial",
                           dir=directory)
    os.rmdir(tmp)                       # the writer creates it, as it would create path
    try:
        yield tmp
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(directory)


def write_bytes(path, data):
    with atomic_open(path, "wb") as f:
        f.write(data)


def _keep_mode(path, tmp):
    """mkstemp creates 0600 files; give the new file what open() would have."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)


def _umask():
    # /proc avoids os.umask's set-and-restore, which races with other threads
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o22)
    os.umask(umask)
    return umask


def same_file(a, b):
    """Whether two paths name the same existing file (hard links, symlinks, ``./x``)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
