"""Safe output files: the one place where pwsim puts an HDF5 file on disk.

Every command writes through :class:`OutputFile` (``pwsim run`` and ``relax`` their checkpoints and
results, ``bands`` and ``dos`` the groups they add, :func:`pwsim.save`). The rules, documented for
users in docs/hdf5.md ("Writing"):

* **Built in memory, then copied with plain writes.** The HDF5 file is made by h5py in memory (the
  core driver, no backing store); its bytes are written with ``os.write`` to ``NAME.<pid>.part``,
  fsync'ed and renamed over ``NAME``. ``NAME`` is therefore at every moment either the previous
  complete file or the new complete one, and a full disk is an ``OSError`` of a plain write (the HDF5
  library writing on a full disk can crash the process).
* **Write errors** (ENOSPC, EIO, EACCES, EFBIG, ...) become :class:`OutputError`: one line naming the
  file and the OS error; the part file is removed and the previous ``NAME`` is untouched.
* **Locked while a job owns it.** ``NAME.lock`` holds an ``flock`` for as long as the job (or the
  ``bands``/``dos`` update) runs; a second writer is refused at once, naming the owner's pid. The
  kernel drops the lock when its process dies, even by SIGKILL, so a stale ``NAME.lock`` never
  blocks anyone. Readers never lock: the rename makes every read see a complete file.
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
    """All of ``data`` (bytes) to ``fd``: the write that fault-injection tests replace."""
    view = memoryview(data)
    while view.nbytes:
        written = os.write(fd, view[:CHUNK])
        view = view[written:]


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


def file_kind(path: Path) -> str:
    """'result' or 'checkpoint' for a pwsim file, 'other' for anything else (or an unreadable file)."""
    try:
        import h5py

        with h5py.File(path, "r", locking=False) as f:
            kind = f.attrs.get("kind", "")
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            return kind if kind in ("result", "checkpoint") else "other"
    except (OSError, ValueError, KeyError, TypeError):  # not HDF5, damaged, unreadable: not a pwsim file
        return "other"


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output path that is a directory, a device, a FIFO or a socket, or
    whose directory is missing or not writable (OutputError, one line)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"the output directory {parent} does not exist")
    for candidate in (path, path.with_name(path.name + ".bak")):
        try:
            mode = os.stat(candidate).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _os_error(candidate, exc) from None
        if stat.S_ISDIR(mode):
            raise OutputError(f"the output {candidate} is a directory; give a file name such as "
                              f"{candidate / 'out.h5'}")
        if not stat.S_ISREG(mode):
            raise OutputError(f"the output {candidate} is a device, FIFO or socket, not a regular file; "
                              "give another name with -o")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"the output directory {parent} is not writable")


def check_not_locked(path) -> None:
    """Refuse at once (OutputError, exit 2) a file that a running job holds: for commands that would
    update it only after a computation (``pwsim bands``/``dos``). It reads the pid in ``NAME.lock``
    and asks whether that process lives; it takes no lock, so it never disturbs a job starting now
    (a lock file left by a killed job names a dead pid and does not count)."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    try:
        owner = int(lock_path.read_text(errors="replace").strip() or 0)
    except (OSError, ValueError):
        return
    if owner <= 0 or owner == os.getpid():
        return
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return
    except OSError:  # alive, another user's
        pass
    raise OutputError(f"{path} is being written by another pwsim job (pid {owner}); "
                      "wait for it to finish or choose another output with -o")


class OutputFile:
    """An output file owned by one job: locked on ``__enter__``, written whole by :meth:`write`.

    backup: keep the file found at ``path`` as ``NAME.bak`` at the first write (see the module
            docstring); False for in-place updates (``bands``/``dos`` adding a group).
    """

    def __init__(self, path, backup: bool = True):
        self.path = Path(path)
        self.backup = backup
        self.lock_path = self.path.with_name(self.path.name + ".lock")
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
        import fcntl

        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _os_error(self.lock_path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise OutputError(f"{self.path} is being written by another pwsim job (pid {owner or '?'}); "
                                  "wait for it to finish or choose another output with -o") from None
            except OSError:  # a filesystem without flock: run unlocked rather than not at all
                pass
            try:  # the holder before us may have removed the file between our open and our lock
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            self._unlock()
            raise _os_error(self.lock_path, exc) from None

    def _unlock(self) -> None:
        if self._fd is None:
            return
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
        return self._commit(hdf5_image(fill), on_commit)

    def update(self, edit) -> Path:
        """Apply ``edit(h5py.File)`` to a copy of the current file and put it back atomically."""
        if not parallel.is_root():
            return self.path
        if self._fd is None:
            raise RuntimeError("OutputFile.update outside its with-block")
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
        part = self.path.with_name(f"{self.path.name}.{os.getpid()}.part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # less the umask, as any file
            try:
                _write_bytes(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
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
        if not self.path.exists():
            return
        bak = self.path.with_name(self.path.name + ".bak")
        if bak.exists() and file_kind(self.path) == "checkpoint":
            return  # a previous checkpoint never displaces the backup of a finished result
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.bak.part")
        try:
            try:
                os.link(self.path, tmp)
            except OSError:  # no hard links on this filesystem: copy
                import shutil

                shutil.copy2(self.path, tmp)
            os.replace(tmp, bak)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


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
