"""Safe output files: the one place where pwsim puts an HDF5 file on disk.

Every command writes through :class:`OutputFile` (``pwsim run`` and ``relax`` their checkpoints and
results, ``bands`` and ``dos`` the groups they add, :func:`pwsim.save`). The rules, documented for
users in docs/hdf5.md ("Writing"):

* **Built in memory, then copied with plain writes.** The HDF5 file is made by h5py in memory (a
  :class:`PagedImage` through h5py's file-object driver; the core driver for in-place updates), its
  big datasets left to be written from the caller's arrays (:func:`defer`: no second copy of the
  orbitals); its bytes are written with ``os.write`` to ``NAME.<pid>.part``,
  fsync'ed and renamed over ``NAME``. ``NAME`` is therefore at every moment either the previous
  complete file or the new complete one, and a full disk is an ``OSError`` of a plain write (the HDF5
  library writing on a full disk can crash the process).
* **Write errors** (ENOSPC, EIO, EACCES, EFBIG, ...) become :class:`OutputError`: one line naming the
  file and the OS error; the part file is removed and the previous ``NAME`` is untouched.
* **Locked while a job owns it.** ``NAME.lock`` holds an ``flock`` for as long as the job (or the
  ``bands``/``dos`` update) runs; a second writer is refused at once, naming the owner's pid. The
  lock file is one the job created itself (``O_EXCL``, no link followed); one found in the way is
  only inspected, never written: held -> refused; stale -> removed and replaced (the kernel drops a
  lock when its process dies, even by SIGKILL, so a stale ``NAME.lock`` never blocks anyone, whoever
  has its pid now and whatever its permissions); a symbolic link, a file with other hard links or a
  non-file there -> refused, untouched. Readers never lock: the rename makes every read see a
  complete file.
* **No link followed.** An output that is a symbolic link or has other hard links is refused (pwsim
  never replaces a file that is also another one); part files are created with ``O_EXCL`` and
  ``O_NOFOLLOW``. Pictures go through the same writer (:func:`write_file`), rendered in memory.
* **Backups.** The first write of a job keeps the file that was at ``NAME`` before it as
  ``NAME.bak`` (a hard link, so ``NAME`` never disappears); later writes of the same job (its
  checkpoints, its result) never touch ``NAME.bak``. A previous *checkpoint* is moved to
  ``NAME.bak`` only if that slot is free: it never replaces the backup of a finished result.
* **Signals** (SIGINT, SIGTERM) are held back during the backup-and-rename, so an interrupted job
  leaves either the old or the new file, and the ``on_commit`` hook runs in the same window.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import signal
import stat
import time
from pathlib import Path

from .. import parallel
from ..errors import EnvironmentProblem, InputError

#: bytes per os.write call when copying an image to disk
CHUNK = 1 << 22


class OutputError(EnvironmentProblem):
    """An output file could not be written (disk full, I/O error, permissions, locked). Exit status 2."""


def _os_error(path, exc: OSError) -> OutputError:
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
    return OutputError(f"cannot write {path}: {reason}")


def _write_bytes(fd: int, data) -> None:
    """All of ``data`` (bytes, or a :class:`PagedImage`) to ``fd``: the write that fault-injection
    tests replace."""
    for part in (data.views() if isinstance(data, PagedImage) else (data,)):
        view = memoryview(part)
        while view.nbytes:
            written = os.write(fd, view[:CHUNK])
            view = view[written:]


class PagedImage:
    """A file in memory, in pages of PAGE bytes, that h5py writes through its file-object driver.

    The HDF5 file of a result or checkpoint is built in memory and put on disk with plain writes (the
    module docstring). Its metadata and small datasets exist once, in pages: the core driver's image
    had to be copied out whole (``get_file_image``) before it could be written, so a checkpoint held
    its orbitals three times (the arrays, the image, the copy). Pages are never moved or copied as the
    file grows (a bytearray or BytesIO reallocates), they are written out as they are, and a page
    nothing was written into does not exist (it reads as zeros).

    The big datasets (every k-point's orbitals, the densities) are not copied at all: :func:`defer`
    lets HDF5 reserve their place in the file without writing it, and :meth:`views` hands out the
    caller's arrays there, so :func:`_write_bytes` puts them on disk straight from the SCF's arrays,
    one dataset after the other (issue 28: a checkpoint of Al32, 8 k-points, no longer adds a second
    copy of the orbitals to the SCF's peak). The arrays must not change until the file is written
    (:meth:`OutputFile.write` builds and writes it in one call)."""

    #: (small: between the deferred datasets HDF5 writes their headers and attributes, a few hundred
    #: bytes each, and every page touched exists whole; with 1 MiB pages a checkpoint of 40 k-point
    #: blocks of 0.5 MiB held 21 MiB of pages, as much as the orbitals it had not copied)
    PAGE = 1 << 16

    def __init__(self):
        self.pages: dict[int, bytearray] = {}
        self.size = 0
        self.pos = 0
        # (offset in the file, the bytes to put there, the dataset's name)
        self.deferred: list[tuple[int, memoryview, str]] = []
        self.ids: list = []  # their h5py ids while the file is built

    # the file-object protocol h5py uses (seek, tell, read/readinto, write, truncate, flush)
    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _spans(self, start: int, n: int):
        """(page, offset in it, offset in the caller's buffer, length) covering [start, start + n)."""
        done = 0
        while done < n:
            page, offset = divmod(start + done, self.PAGE)
            length = min(self.PAGE - offset, n - done)
            yield page, offset, done, length
            done += length

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = view.nbytes
        for page, offset, at, length in self._spans(self.pos, n):
            if page not in self.pages:
                self.pages[page] = bytearray(self.PAGE)
            self.pages[page][offset:offset + length] = view[at:at + length]
        self.pos += n
        self.size = max(self.size, self.pos)
        return n

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(view.nbytes, self.size - self.pos))
        for page, offset, at, length in self._spans(self.pos, n):
            held = self.pages.get(page)
            view[at:at + length] = held[offset:offset + length] if held is not None else bytes(length)
        self.pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        buffer = bytearray(max(0, self.size - self.pos) if n is None or n < 0 else n)
        return bytes(buffer[: self.readinto(buffer)])

    def truncate(self, size: int | None = None) -> int:
        """As a file on disk: shorter drops the end, longer adds zeros; the position stays."""
        size = self.pos if size is None else size
        if size < self.size:  # what lies beyond the new end reads as zeros if the file grows again
            for page, offset, _, length in self._spans(size, self.size - size):
                if page in self.pages:
                    self.pages[page][offset:offset + length] = bytes(length)
            for page in [p for p in self.pages if p * self.PAGE >= size]:
                del self.pages[page]
        self.size = size
        return size

    def flush(self) -> None:
        pass

    def views(self):
        """The file's bytes in order (memoryviews, no copy): the pages, and the deferred arrays at
        their places (zeros where nothing was written)."""
        pos = 0
        for offset, data, _ in sorted(self.deferred, key=lambda d: d[0]) + [(self.size, memoryview(b""), "")]:
            for page, at, _, length in self._spans(pos, offset - pos):  # the pages before it
                held = self.pages.get(page)
                yield memoryview(held)[at:at + length] if held is not None else memoryview(bytes(length))
            if data.nbytes:
                yield data
            pos = offset + data.nbytes


#: the image being built by :func:`hdf5_pages` (None outside it): where :func:`defer` registers arrays
_building: PagedImage | None = None
#: datasets smaller than this are written into the pages as usual
DEFER_MIN_BYTES = 1 << 16


def defer(group, name: str, data):
    """Create dataset ``name`` of ``group`` for ``data`` with its place in the file reserved but not
    written, and have the array written there straight from memory when the file goes to disk (see
    :class:`PagedImage`). Returns the dataset, or None where it cannot be done (no image being built,
    a small or non-contiguous array, a dtype whose bytes in the file would differ from memory's):
    then the caller writes it the usual way."""
    import sys

    import numpy as np

    if _building is None or not isinstance(data, np.ndarray) or data.nbytes < DEFER_MIN_BYTES:
        return None
    if not data.flags.c_contiguous or data.dtype.kind not in "iufc" or sys.byteorder != "little" \
            or not data.dtype.isnative:
        return None
    from h5py import h5d, h5p

    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)  # the place is fixed now (its offset known) ...
    dcpl.set_fill_time(h5d.FILL_TIME_NEVER)  # ... and nothing is written there: the array will be
    ds = group.create_dataset(name, shape=data.shape, dtype=data.dtype, dcpl=dcpl)
    offset = ds.id.get_offset()
    if offset is None or ds.id.get_storage_size() != data.nbytes or ds.dtype != data.dtype:
        ds[...] = data  # (never seen: written the usual way)
        return ds
    _building.deferred.append((offset, memoryview(data).cast("B"), ds.name))
    _building.ids.append(ds.id)
    return ds


def hdf5_pages(fill) -> PagedImage:
    """An HDF5 file built in memory by ``fill(h5py.File)``, as a :class:`PagedImage` (whose deferred
    arrays, :func:`defer`, are put on disk when its views are written)."""
    global _building
    import h5py

    image = PagedImage()
    _building = image
    try:
        with h5py.File(image, "w") as f:
            fill(f)
            # a deferred dataset that was deleted may leave its place to other data or metadata, which
            # the array would overwrite; one still linked (held open till now) keeps its place
            for ident, (_, _, name) in zip(image.ids, image.deferred):
                if h5py.h5i.get_name(ident) is None:
                    raise RuntimeError(f"the deferred dataset {name} was deleted while the file was built")
            image.ids.clear()
    finally:
        _building = None
    return image


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM back while the block runs (delivered right after it)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask (Windows) or not the main thread
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def hdf5_image(fill, base: bytes | None = None) -> bytes:
    """The bytes of an HDF5 file built in memory by ``fill(h5py.File)``; ``base``: start from these
    bytes (an existing file to modify) instead of an empty file."""
    import h5py
    from h5py import h5f, h5p

    if base is None:
        f = h5py.File(f"pwsim-memory-{id(fill)}", "w", driver="core", backing_store=False)
    else:
        fapl = h5p.create(h5p.FILE_ACCESS)
        fapl.set_fapl_core(backing_store=False)
        fapl.set_file_image(base)
        f = h5py.File(h5f.open(f"pwsim-memory-{id(fill)}".encode(), h5f.ACC_RDWR, fapl=fapl))
    with f:
        fill(f)
        f.flush()
        return f.id.get_file_image()


#: the first bytes of every HDF5 file pwsim writes (no user block)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: seconds a writer retries a lock held by someone else before refusing: a ``check_not_locked`` probe
#: holds it for microseconds, and must not make a job starting at that moment fail
LOCK_RETRY_SECONDS = 0.25
#: how often the lock file may change under us (a stale one removed, a race lost) before we give up
LOCK_ATTEMPTS = 8
#: no-follow flags for every open of a lock or part file (0 where the system lacks them)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def file_kind(path: Path) -> str:
    """'result' or 'checkpoint' for a pwsim file, 'other' for anything else (or an unreadable file)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                return "other"  # a picture, a text file: no need to ask h5py
        import h5py

        with h5py.File(path, "r", locking=False) as f:
            kind = f.attrs.get("kind", "")
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            return kind if kind in ("result", "checkpoint") else "other"
    except (OSError, ValueError, KeyError, TypeError):  # not HDF5, damaged, unreadable: not a pwsim file
        return "other"


def check_output_name(path) -> Path:
    """The output as a Path; an OutputError for a name no file can have (a NUL character, "." or "..")."""
    if "\0" in os.fspath(path):
        raise OutputError(f"the output name {os.fspath(path)!r} contains a NUL character; give a file name")
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise OutputError(f"the output {path} is a directory; give a file name such as {path / 'out.h5'}")
    return path


def _is_own_backup(path: Path, info: os.stat_result) -> bool:
    """NAME and NAME.bak are one file: a job killed between making the backup link and its rename."""
    try:
        return info.st_nlink == 2 and os.path.samestat(info, os.lstat(path.with_name(path.name + ".bak")))
    except OSError:
        return False


def check_not_linked(path) -> None:
    """Refuse (OutputError) an output that is a symbolic link or a file with other hard links: pwsim
    replaces only files that are nothing but themselves, so that no link can make it destroy another."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _os_error(path, exc) from None
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(f"the output {path} is a symbolic link; pwsim does not write through links: give the "
                          "file it points to, or remove the link")
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1 and not _is_own_backup(path, info):
        raise OutputError(f"the output {path} has {info.st_nlink - 1} other hard link(s); pwsim does not replace "
                          "a file that is also another: copy it away or choose another name with -o")


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output path that is a directory, a device, a FIFO, a socket, a
    symbolic link or a file with other hard links, or whose directory is missing or not writable
    (OutputError, one line)."""
    path = check_output_name(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"the output directory {parent} does not exist")
    for candidate in (path, path.with_name(path.name + ".bak")):
        try:
            mode = os.lstat(candidate).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _os_error(candidate, exc) from None
        if stat.S_ISLNK(mode) and candidate != path:
            continue  # a link at NAME.bak is replaced by the rename, never followed
        if stat.S_ISDIR(mode):
            raise OutputError(f"the output {candidate} is a directory; give a file name such as "
                              f"{candidate / 'out.h5'}")
        if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
            raise OutputError(f"the output {candidate} is a device, FIFO or socket, not a regular file; "
                              "give another name with -o")
    check_not_linked(path)
    if not os.access(parent, os.W_OK):
        raise OutputError(f"the output directory {parent} is not writable")


# ---------------------------------------------------------------------- locks
def _lock_path(path) -> Path:
    return Path(path).with_name(Path(path).name + ".lock")


def _locked_error(path, owner: str) -> OutputError:
    return OutputError(f"{path} is being written by another pwsim job (pid {owner or '?'}); "
                       "wait for it to finish or choose another output with -o")


def _owner(fd: int) -> str:
    """The pid written in a lock file (read without moving the file offset), or '' (nothing else of a
    file found there is ever echoed)."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _open_foreign_lock(lock: Path):
    """An fd on the existing lock file ``lock``, opened without following a link and checked to be a
    plain file with no other name; None if it vanished. A link or anything else there is refused:
    pwsim never writes into it, and does not pretend to know whether it guards anything."""
    fd = None
    for flags in (os.O_RDWR, os.O_RDONLY):  # read-only is enough for flock; a stale lock may be read-only
        try:
            fd = os.open(lock, flags | os.O_NONBLOCK | _NOFOLLOW)
            break
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputError(f"the lock file {lock} is a symbolic link, not a lock of pwsim; nothing was "
                                  "written through it: remove the link") from None
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR) or flags == os.O_RDONLY:
                raise OutputError(f"cannot open the lock file {lock} ({exc.strerror}); if no pwsim job is "
                                  "writing that output, remove it") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise OutputError(f"the lock file {lock} {what}, so it is not a lock of pwsim; nothing was written "
                          "to it: remove it")
    return fd


def _try_flock(fd: int, mode: int, wait: float = 0.0) -> bool:
    """flock(fd, mode) without blocking, retried for ``wait`` seconds; True once held. A filesystem
    without flock counts as held (run unlocked rather than not at all)."""
    import fcntl

    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        except OSError:
            return True


def _is_at(fd: int, path: Path) -> bool:
    """Whether ``path`` is (still) the file open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except OSError:
        return False


def check_not_locked(path) -> None:
    """Refuse at once (OutputError, exit 2) a file that a running job holds: for commands that would
    update it only after a computation (``pwsim bands``/``dos``). It asks the kernel whether the lock
    of ``NAME.lock`` is held (a shared lock taken and dropped at once), so a lock file left by a
    killed job never counts, whatever process now has its pid; a link planted there is refused."""
    import fcntl

    lock = _lock_path(path)
    fd = _open_foreign_lock(lock)
    if fd is None:
        return
    try:
        if not _try_flock(fd, fcntl.LOCK_SH):
            raise _locked_error(path, _owner(fd))
    finally:
        os.close(fd)  # drops the shared lock


class OutputFile:
    """An output file owned by one job: locked on ``__enter__``, written whole by :meth:`write`.

    backup: keep the file found at ``path`` as ``NAME.bak`` at the first write (see the module
            docstring); False for in-place updates (``bands``/``dos`` adding a group).
    """

    def __init__(self, path, backup: bool = True):
        self.path = check_output_name(path)
        self.backup = backup
        self.lock_path = _lock_path(self.path)
        self.writes = 0
        self._fd = None

    # ------------------------------------------------------------------ lock
    def __enter__(self):
        check_writable(self.path)
        if not parallel.is_root():  # under MPI rank 0 alone locks and writes
            return self
        self._lock()
        try:
            self._remove_stale_parts()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc):
        self._unlock()
        return False

    def _lock(self) -> None:
        """Hold an flock on a ``NAME.lock`` this process created itself (O_EXCL, no link followed).
        A lock file found there is inspected, never written: held -> refused, naming its pid; stale
        (its job is dead, whoever has its pid now) -> removed, and ours made in its place."""
        import fcntl

        for _ in range(LOCK_ATTEMPTS):
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
            except FileExistsError:
                try:
                    self._clear_stale_lock()
                except _KeepLock:
                    return
                continue
            except OSError as exc:
                raise _os_error(self.lock_path, exc) from None
            if not _try_flock(fd, fcntl.LOCK_EX, LOCK_RETRY_SECONDS):
                owner = _owner(fd)  # another job took our new file for a stale one and won the race
                os.close(fd)
                raise _locked_error(self.path, owner)
            if not _is_at(fd, self.lock_path):  # removed meanwhile by a job that found it stale
                os.close(fd)
                continue
            self._fd = fd
            try:
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o644)  # readable by every user whatever the umask: others can probe it
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as exc:
                self._unlock()
                raise _os_error(self.lock_path, exc) from None
            return
        raise OutputError(f"cannot lock {self.path}: its lock file {self.lock_path} keeps changing")

    def _clear_stale_lock(self) -> None:
        """A lock file is in the way: refused if held or not a plain lock file; removed if stale. If it
        cannot be removed (another user's, in a sticky directory) its flock is simply ours to hold."""
        import fcntl

        fd = _open_foreign_lock(self.lock_path)
        if fd is None:
            return
        if not _try_flock(fd, fcntl.LOCK_EX, LOCK_RETRY_SECONDS):
            owner = _owner(fd)
            os.close(fd)
            raise _locked_error(self.path, owner)
        if not _is_at(fd, self.lock_path):
            os.close(fd)
            return
        try:
            os.unlink(self.lock_path)  # stale and ours to lock: removing a name destroys nothing
        except OSError:
            self._fd = fd  # not ours to remove: hold its lock as it is (we never write into it)
            raise _KeepLock() from None
        os.close(fd)

    def _unlock(self) -> None:
        if self._fd is None:
            return
        if _is_at(self._fd, self.lock_path):
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)  # before closing: nobody can lock the old file after us
        os.close(self._fd)
        self._fd = None

    def _remove_stale_parts(self) -> None:
        """Part files of dead processes (a SIGKILL during a write); we hold the lock, so no live
        writer owns one."""
        for stale in self.path.parent.glob(f"{glob.escape(self.path.name)}.*.part"):
            with contextlib.suppress(OSError):
                stale.unlink()

    # ------------------------------------------------------------------ writing
    def write(self, fill, on_commit=None) -> Path:
        """Build the file by ``fill(h5py.File)`` in memory and put it at ``path`` atomically.

        on_commit: called right after the rename, while SIGINT/SIGTERM are still held back.
        Under MPI only rank 0 writes; the other ranks return at once.
        """
        if not parallel.is_root():
            return self.path
        if self._fd is None:
            raise RuntimeError("OutputFile.write outside its with-block")
        return self._commit(hdf5_pages(fill), on_commit)

    def write_bytes(self, data: bytes) -> Path:
        """Put ``data`` (a picture rendered in memory, any file's bytes) at ``path`` atomically."""
        if not parallel.is_root():
            return self.path
        if self._fd is None:
            raise RuntimeError("OutputFile.write_bytes outside its with-block")
        return self._commit(data, None)

    def update(self, edit) -> Path:
        """Apply ``edit(h5py.File)`` to a copy of the current file and put it back atomically."""
        if not parallel.is_root():
            return self.path
        if self._fd is None:
            raise RuntimeError("OutputFile.update outside its with-block")
        check_not_linked(self.path)
        try:
            base = self.path.read_bytes()
        except OSError as exc:
            raise OutputError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            image = hdf5_image(edit, base)
        except OSError as exc:  # h5py could not open the bytes as HDF5
            raise InputError(f"{self.path} is not a readable HDF5 file ({str(exc).splitlines()[0]})") from None
        return self._commit(image, None)

    def _commit(self, data, on_commit) -> Path:
        check_not_linked(self.path)  # again: a link may have been planted since the job began
        part = self.path.with_name(f"{self.path.name}.{os.getpid()}.part")
        try:
            _write_new(part, data)
            with signals_deferred():
                if self.backup and self.writes == 0:
                    self._keep_previous()
                os.replace(part, self.path)
                self.writes += 1
                if on_commit is not None:
                    on_commit()
            _sync_directory(self.path.parent)
        except OSError as exc:
            raise _os_error(exc.filename or self.path, exc) from None
        finally:
            with contextlib.suppress(OSError):
                part.unlink()
        return self.path

    def _keep_previous(self) -> None:
        """NAME -> NAME.bak (a hard link: NAME stays in place until the rename replaces it)."""
        if not os.path.lexists(self.path):
            return
        bak = self.path.with_name(self.path.name + ".bak")
        if bak.exists() and file_kind(self.path) == "checkpoint":
            return  # a previous checkpoint never displaces the backup of a finished result
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.bak.part")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # whatever is there (a planted link) is only a name: never written through
        try:
            try:
                os.link(self.path, tmp, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                _copy_exclusive(self.path, tmp)
            os.replace(tmp, bak)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


class _KeepLock(Exception):
    """Internal: the stale lock file could not be removed; its flock is held as our lock."""


#: errors of os.link meaning "no hard links here" (then the backup is a copy)
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _create_exclusive(path: Path) -> int:
    """A new file at ``path`` for writing, created by us (O_EXCL: never an existing file or the target
    of a link); a leftover of that name is removed first (only its name)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        return os.open(path, flags, 0o666)  # less the umask, as any file
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, 0o666)


def _copy_exclusive(source: Path, target: Path) -> None:
    """Copy ``source`` into a new file ``target`` (for filesystems without hard links)."""
    with open(source, "rb") as fh:
        data = fh.read()
    _write_new(target, data)


def _write_new(path: Path, data) -> None:
    """``data`` into a file ``path`` created here (never through a link), flushed to disk."""
    fd = _create_exclusive(path)
    try:
        _write_bytes(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path, data: bytes, backup: bool = True) -> Path:
    """Put ``data`` at ``path`` through the safe writer: locked, no link followed, atomic rename,
    the previous file kept as ``NAME.bak``, a write error an :class:`OutputError` that leaves the
    previous file in place."""
    with OutputFile(path, backup=backup) as out:
        return out.write_bytes(data)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: not every filesystem lets a directory be fsync'ed)."""
    try:
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
