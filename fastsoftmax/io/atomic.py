"""Write files safely: atomically, through symlinks, never over a device, and one writer at a time.

A reader sees the old file or the whole new one. A path naming a symlink is
written at the link's target (the link stays); a path naming anything that is
not a regular file (a device such as /dev/null, a FIFO, a folder) is refused
rather than replaced by a file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: there the lock is skipped
    fcntl = None


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message names it."""


def output_path(path) -> Path:
    """The file that writing `path` writes: symlinks followed to their target.

    Raises OutputError if that exists and is not a regular file.
    """
    target = Path(os.path.realpath(path))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except NotADirectoryError:
        raise OutputError(f"{path}: a part of the path is not a folder") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or other special file")
        shown = str(path) if str(target) == os.path.abspath(path) else f"{path} (-> {target})"
        raise OutputError(f"{shown} is {kind}, not a regular file; name a file to write to")
    return target


def check_writable(path) -> Path:
    """The target of `path` (output_path) if a file can be written there; else OutputError naming it.

    Tries what writing will do (a temporary file beside the target, removed at
    once), so read-only folders and file systems are found before any work.
    """
    target = output_path(path)
    folder = target.parent
    while not folder.exists():  # atomic_write creates the missing folders: check the first that exists
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is not a folder")
    if folder == target.parent:
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as e:
            raise OutputError(f"{path} cannot be written: {e.strerror} in {folder}") from None
        os.close(fd)
        os.unlink(tmp)
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path} cannot be written: no permission to create folders in {folder}")
    return target


def check_outputs(outputs) -> None:
    """check_writable for each (flag, path) or (flag, path, example) of outputs (a None path is skipped),
    the error naming the flag; a folder's names `example`, a file name in it, as the fix."""
    for flag, path, *example in outputs:
        if path is None:
            continue
        try:
            check_writable(path)
        except OutputError as e:
            hint = f", such as {os.path.join(path, example[0])}" if example and os.path.isdir(path) else ""
            raise OutputError(f"{flag}: {e}{hint}") from None


def _identity(path):
    """(the resolved path, (device, inode) or None where nothing exists there yet)."""
    resolved = os.path.realpath(path)
    try:
        found = os.stat(resolved)
    except OSError:
        return resolved, None
    return resolved, (found.st_dev, found.st_ino)


def check_apart(outputs, inputs=(), rewrites=()) -> None:
    """OutputError unless each output is a file of its own, none of them an input: before any work,
    since writing one over another (or over a file the run reads) loses data with no error.

    outputs are (flag, path) pairs, inputs (flag, path) or (flag, path, read): a path that, once
    written, is read in place of the input `read` (a raw idx file's name beside its .gz). A None path
    is skipped. Two are the same file where their resolved paths are, or their device and inode (a
    hard link or a symlink to it). rewrites: (output flag, input flag) pairs that may be one file, as
    --save continuing the model of --resume.
    """
    outputs = [(flag, path, *_identity(path)) for flag, path in outputs if path is not None]
    inputs = [(flag, path, *_identity(path), *read) for flag, path, *read in inputs if path is not None]

    def same(a, b):
        return a[2] == b[2] or (a[3] is not None and a[3] == b[3])

    for i, output in enumerate(outputs):
        flag, path = output[:2]
        for other in outputs[i + 1:]:
            if same(output, other):
                raise OutputError(f"{flag} {path} and {other[0]} {other[1]} are the same file: one would "
                                  "overwrite the other; give each output its own path")
        for source in inputs:
            if not same(output, source) or (flag, source[0]) in rewrites:
                continue
            if len(source) > 4:
                raise OutputError(f"{flag} {path} would be read in place of {source[0]} {source[4]} by the next "
                                  f"run; give {flag} another path")
            raise OutputError(f"{flag} {path} is {source[0]} {source[1]}, which this run reads: writing it "
                              f"would destroy it; give {flag} another path")


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside `path`'s target; on success fsync it and rename it over the target.

    On an exception (Ctrl-C and SystemExit included) the temporary file is
    removed and the target is left untouched, so an interrupted save never
    leaves a half-written model or result. Raises OutputError, before
    writing anything, where the target is not a regular file; an OSError
    without a file name (ENOSPC from a write or fsync) comes out naming the target.
    """
    path = output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:  # a full disk: say which file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


@contextlib.contextmanager
def exclusive(path, what="the file"):
    """Hold a lock on writing `path`'s target for the block; OutputError if another live process holds it.

    The lock is an flock on ``.<name>.lock`` beside the target, which the
    kernel releases when its holder dies (kill -9 included), so a stale lock
    never blocks. Taking it removes the temporary files a killed writer left
    beside the target; the lock file is removed on leaving.
    """
    target = output_path(path)
    if fcntl is None:
        yield target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    while True:
        f = open(lock, "a+")  # noqa: SIM115 - held open across the yield: the lock lives as long as it
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise OutputError(f"{path} is being written by another run (process {holder}); "
                              f"wait for it to finish or choose another path for {what}") from None
        # The holder before us may have removed the file after we opened it: lock the one in place.
        try:
            same = os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    try:
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        # Holding the lock, no live process is writing the target: temporary files beside it
        # are what a killed run (kill -9, a power cut) could not remove.
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        yield target
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        f.close()


def _umask():
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask
