"""Parallel runs with MPI through mpi4py (optional: ``pip install 'pwsim[mpi]'``).

``mpiexec -n N pwsim run in.toml`` and ``mpiexec -n N python script.py`` split the work of every
ground state over the N ranks; without a launcher, or with one rank, nothing here imports mpi4py and
every function is a no-op on a one-rank stand-in communicator.

Layout. The ranks form ``npools`` pools of equal size, rank r in pool r // (N / npools). The
k-points (spin channels counted as separate k-points, in the order of ``basis.kpoints``) are split
into contiguous blocks, one per pool: each pool diagonalises only its own k-points. Inside a pool
(a "band group", :class:`BandGroup`) the eigensolver's blocks are distributed by plane-wave columns:
each rank stores its share of every band's coefficients, overlaps are local products summed over
the group (MPI_Allreduce), and H -- the FFTs and non-local products -- is applied to whole bands of
the rank's band chunks after a transpose (MPI_Alltoallv) and transposed back. The density is split
by bands and summed over the group. The grid work that every rank of a group would repeat on the
whole FFT box -- the XC functional point by point, a GGA's gradient and divergence transforms -- is
shared out over the group (:class:`GridShare`, called from pwsim.terms.xc and pwsim.hybrid) with the
serial bits. The choice (:func:`choose_pools`) minimises a simple time model;
``[run] parallel = { pools = P }`` overrides it.

Same answer on any number of ranks. Whatever is summed over k-points (density, band energies,
eigenvalue tables) is summed in the fixed k-point order on every rank (:meth:`Layout.ordered`):
the owner of each k-point broadcasts its contribution and every rank adds them in that order, the
same additions a serial run does. H is applied in chunks that depend on the block size only, also
in a serial run, so every row comes from the same BLAS and FFT calls. Random start vectors are
seeded per k-point (pwsim.scf), not per rank. So 1 and N pools give the same bits in the SCF; forces
and stress add the pools' parts in pool order (last-bit differences). A band group sums its overlaps
over plane-wave slices, in another order than one rank: every rank of the group gets the same bits
(so all take the same decisions), and 1 and N ranks agree to the SCF convergence (tests/test_mpi.py:
1e-9 Ha with a tight density tolerance), not to the bit.

Threads. With MPI each rank runs one FFT thread unless PWSIM_NUM_THREADS or OMP_NUM_THREADS says
otherwise (N ranks on N cores; more threads would oversubscribe them).

Errors. Input errors are found identically on every rank before any collective step; the command
line prints them once (rank 0) and every rank exits with status 2, after the ranks have agreed on it
and finalised MPI (so that the launcher reports 2, see :func:`_leave_before_collective`). An error after the parallel
part has begun may be seen by one rank only: that rank prints one line and aborts the whole job
(``MPI_Abort``), because the others would otherwise wait for it forever. Uncaught exceptions of a
script under mpiexec abort the job the same way.

Signals. SIGINT or SIGTERM to any rank, or to ``mpiexec`` (which forwards them to every rank), ends
the whole job within seconds with one line and exit status 128 + N (:func:`end_on_signal`): a rank
cannot just exit, since the others would wait for it in their next collective (and its own
MPI_Finalize would wait for them). A rank whose main thread is inside an MPI call when the signal
comes cannot run Python's handler until the call returns, which it never does if the rank it waits
for has gone; a watchdog thread (:func:`_signal_watchdog`, woken through ``signal.set_wakeup_fd``)
then ends the job after SIGNAL_GRACE seconds. MPI_Abort's own report ("Abort(143) on node ...") is
not shown: the line pwsim printed says what happened.
"""
from __future__ import annotations

import atexit
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from .backend.splits import ranges
from .errors import EnvironmentProblem, InputError

#: environment variables by which MPI launchers tell a process how many ranks were started
#: (MPICH and Intel MPI hydra, Slurm's PMI2: PMI_SIZE; Open MPI; MVAPICH2)
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
#: environment variables by which launchers give a rank's index among the ranks of its node
LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")
#: H is applied to a block of bands in at most MAX_CHUNKS chunks of at least MIN_CHUNK rows, on any
#: number of ranks (a band group shares the chunks out): the same chunks give the same bits. Small
#: chunks share a small block evenly (with 8-row chunks a rank of a 2-rank group waited 4 % of the H
#: time of Si64 for the other; 2 % with 4); a rank joins its consecutive chunks into one call of H.
#: 2 rows (one FFT pair at Gamma): a molecule's 4 bands are 2 chunks, one per rank of a 2-rank group,
#: not one chunk that one rank applies and densifies while the other waits (CH4 in a box, docs/parallel.md).
#: (A serial run applies H to whole blocks: the chunks matter to band groups only.)
MAX_CHUNKS = 16
MIN_CHUNK = 2
#: the chunks of the replicated fallback (:func:`_shared_operator`), which applies H chunk by chunk
SHARED_MIN_CHUNK = 8
#: fraction of an SCF step's time that band groups do not split (the small Rayleigh-Ritz eigenproblems,
#: potentials, mixing): the Amdahl model of :func:`choose_pools`. Measured on
#: Si64 Gamma, CPU per SCF step outside MPI on 2 ranks / 1 rank = 0.59 (docs/parallel.md); 0.4 before
#: the band group distributed the eigensolver's dense algebra
BAND_SERIAL_FRACTION = 0.2
#: bytes of band rows (whole stored width) that one rank receives in one round of the band group's
#: transposes (pwsim.parallel.BandGroup.rounds): bounds the transposes' buffers for a large cell
TRANSPOSE_BYTES = 8 * 2**20
#: seconds a rank's watchdog waits, after SIGINT or SIGTERM, for the main thread to end the job
#: itself (one line and MPI_Abort take ~0.3 s); past it the main thread is stuck in an MPI call
SIGNAL_GRACE = 2.0
#: seconds a rank other than 0 waits before it reports a signal and aborts: mpiexec forwards a signal
#: to every rank, and rank 0's line (which names the output file's state) then comes alone
PEER_PAUSE = 1.0
#: seconds a rank that met an error during the set-up waits for the others to meet it too (then
#: every rank finalises MPI and exits with the error's status; see :func:`_leave_before_collective`)
ERROR_AGREEMENT = 5.0
#: the signals that end a job (the others keep their defaults)
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def launched_size(environ=None) -> int:
    """Number of ranks the MPI launcher started, read from its environment variables (cheap: no MPI
    import). 1 without a launcher; 0 when ``PWSIM_MPI=1`` asks to initialise MPI anyway (e.g. a
    launcher that sets none of the variables). ``PWSIM_MPI=0`` forbids MPI."""
    environ = os.environ if environ is None else environ
    flag = environ.get("PWSIM_MPI", "").strip().lower()
    if flag in ("0", "no", "off", "false"):
        return 1
    for name in SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    if "PMIX_RANK" in environ and environ.get("SLURM_STEP_NUM_TASKS", "").isdigit():  # srun --mpi=pmix
        return int(environ["SLURM_STEP_NUM_TASKS"])
    return 0 if flag in ("1", "yes", "on", "true") else 1


#: the tag of gather_to_root's point-to-point messages (the only ones pwsim sends)
GATHER_TAG = 28


class Comm:
    """A communicator: an mpi4py one, or (``mpi=None``) the one-rank stand-in of a serial run.

    Arrays travel as host NumPy arrays; the methods with capital names move raw buffers (fast),
    the others pickled Python objects (small data).
    """

    def __init__(self, mpi_comm=None):
        self.mpi = mpi_comm
        self.rank = mpi_comm.Get_rank() if mpi_comm is not None else 0
        self.size = mpi_comm.Get_size() if mpi_comm is not None else 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def bcast(self, obj, root: int = 0):
        return obj if self.mpi is None else self.mpi.bcast(obj, root=root)

    def allgather(self, obj) -> list:
        return [obj] if self.mpi is None else self.mpi.allgather(obj)

    def barrier(self) -> None:
        if self.mpi is not None:
            self.mpi.Barrier()

    def Bcast_array(self, array, root: int, shape, dtype=np.float64) -> np.ndarray:
        """The root's host array (its ``array``; the others pass None) on every rank."""
        if self.mpi is None:
            return array
        # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
        buf = np.ascontiguousarray(array, dtype=dtype).reshape(shape) if self.rank == root else np.empty(shape, dtype)
        self.mpi.Bcast(buf, root=root)
        return buf

    def Allgather_rows(self, rows: np.ndarray, counts) -> np.ndarray:
        """Concatenate every rank's block of rows (rank r gives ``counts[r]`` rows of equal shape)."""
        if self.mpi is None:
            return rows
        from mpi4py import MPI

        rows = np.ascontiguousarray(rows)
        out = np.empty((sum(counts), *rows.shape[1:]), dtype=rows.dtype)
        # one MPI datatype per row: counts stay small (a block of a large cell exceeds 2**31 bytes)
        row = MPI.BYTE.Create_contiguous(rows.dtype.itemsize * math.prod(rows.shape[1:])).Commit()
        try:
            displacements = [sum(counts[:r]) for r in range(len(counts))]
            self.mpi.Allgatherv([rows, len(rows), row], [out, (list(counts), displacements), row])
        finally:
            row.Free()
        return out

    def Allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        """The element-wise sum over the ranks of a host array (float or complex), the same bits on
        every rank (MPI_SUM of IEEE numbers is commutative bit for bit, and MPICH's and Open MPI's
        algorithms combine the same partial sums on every rank)."""
        if self.mpi is None:
            return array
        from mpi4py import MPI

        array = np.ascontiguousarray(array)
        out = np.empty_like(array)
        real = np.float32 if array.dtype in (np.float32, np.complex64) else np.float64
        self.mpi.Allreduce(array.view(real), out.view(real), op=MPI.SUM)
        return out

    def Alltoall_pieces(self, send: np.ndarray, send_counts, recv_counts, send_offsets=None, recv=None,
                        recv_offsets=None) -> np.ndarray:
        """Rank r gets, from every rank s in rank order, the ``send_counts[r]`` elements that s put
        at ``send_offsets[r]`` (default: packed in rank order) of its flat ``send`` buffer, written at
        ``recv_offsets[s]`` (default: packed) of ``recv`` (default: a new flat array). Returns recv."""
        if self.mpi is None:
            return send
        send = np.ascontiguousarray(send).reshape(-1)
        recv = np.empty(int(sum(recv_counts)), dtype=send.dtype) if recv is None else recv.reshape(-1)
        send_offsets = _packed(send_counts) if send_offsets is None else [int(o) for o in send_offsets]
        recv_offsets = _packed(recv_counts) if recv_offsets is None else [int(o) for o in recv_offsets]
        self.mpi.Alltoallv([send, (list(map(int, send_counts)), send_offsets)],
                           [recv, (list(map(int, recv_counts)), recv_offsets)])
        return recv

    def Allgather_pieces(self, send: np.ndarray, counts) -> np.ndarray:
        """The flat concatenation, in rank order, of every rank's flat ``send`` (``counts[r]`` elements)."""
        if self.mpi is None:
            return send
        send = np.ascontiguousarray(send).reshape(-1)
        recv = np.empty(int(sum(counts)), dtype=send.dtype)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist()
        self.mpi.Allgatherv(send, [recv, (list(map(int, counts)), offsets)])
        return recv

    def split(self, color: int, key: int) -> Comm:
        return self if self.mpi is None else Comm(self.mpi.Split(color, key))

    def abort(self, code: int) -> None:
        if self.mpi is None:
            sys.exit(code)
        # The launcher forwards this rank's stderr through a pipe; MPI_Abort kills the job at once and
        # may beat the forwarding of the one-line message just written (seen 1 in ~20 with MPICH).
        # A moment's pause lets the line through; the job is ending anyway.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        time.sleep(0.3)
        _silence_descriptors()  # MPICH's "Abort(N) on node ..." would follow pwsim's line
        self.mpi.Abort(code)


def _silence_descriptors() -> None:
    """Point file descriptors 1 and 2 at /dev/null (this process is about to end)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    except OSError:
        pass


def _packed(counts) -> list[int]:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist()


_WORLD: Comm | None = None
_STATE = {"collective": False, "stderr": None, "signal_ignored": None}


def world() -> Comm:
    """The communicator of all ranks (created on the first call; mpi4py is imported only when a
    launcher started more than one rank)."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    size = launched_size()
    if size == 1:
        _WORLD = Comm()
        return _WORLD
    try:
        from mpi4py import MPI
    except ImportError:
        raise EnvironmentProblem(f"started by an MPI launcher ({size} ranks) but mpi4py is not installed: "
                                 "pip install 'pwsim[mpi]' (or set PWSIM_MPI=0 to run serially)") from None
    comm = MPI.COMM_WORLD
    _WORLD = Comm(comm) if comm.Get_size() > 1 else Comm()
    if _WORLD.size > 1:
        if not any(os.environ.get(v, "").isdigit() for v in ("PWSIM_NUM_THREADS", "OMP_NUM_THREADS")):
            os.environ["PWSIM_NUM_THREADS"] = "1"  # one FFT thread per rank: the ranks fill the cores
        sys.excepthook = _abort_on_exception
        _watch_signals()
    return _WORLD


def size() -> int:
    return world().size


def is_root() -> bool:
    """True on rank 0 (and in a serial run): the rank that prints and writes files."""
    return world().rank == 0


def barrier() -> None:
    world().barrier()


class root_decides:  # (lower case: used like a function, ``with root_decides(cm) as value``)
    """Enter the context manager ``cm`` on every rank, and let rank 0's outcome count for all: if
    entering fails there (an output file locked by another job, say), every rank raises that error,
    so that no rank goes on to wait for rank 0 in a collective operation. One rank: ``cm`` itself."""

    def __init__(self, cm):
        self.cm = cm
        self.entered = False

    def __enter__(self):
        comm = world()
        error = value = None
        try:
            value = self.cm.__enter__()
            self.entered = True
        except Exception as exc:
            if comm.size == 1:
                raise
            error = exc
        error = comm.bcast(error if comm.rank == 0 else None) if comm.size > 1 else None
        if error is not None:
            if self.entered:
                self.cm.__exit__(None, None, None)
            raise error
        return value

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc) if self.entered else False


def begin_collective() -> None:
    """Mark that ranks may now disagree about errors (after set-up): an error then aborts the job."""
    _STATE["collective"] = True


def quiet_other_ranks() -> None:
    """For the command line: ranks other than 0 print nothing (their stdout and stderr go to
    /dev/null); :func:`exit` still reaches the terminal when one of them fails alone."""
    comm = world()
    if comm.size == 1 or comm.rank == 0 or _STATE["stderr"] is not None:
        return
    _STATE["stderr"] = os.fdopen(os.dup(sys.stderr.fileno()), "w")
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open for the rest of the process)
    atexit.register(_STATE["stderr"].close)
    atexit.register(sys.stdout.close)


def exit(code: int, message: str = "") -> None:
    """End this rank with ``code`` (the command line's last word).

    Serial, or with status 0 or 1 (converged or not: every rank knows it alike): a plain exit.
    Before :func:`begin_collective` see :func:`_leave_before_collective`. Otherwise the other ranks
    may be waiting for this one in a collective operation, so the whole job is aborted with
    ``code``; an internal error (status 3), which may have happened on this rank alone, is printed by
    it as ``message (rank r)`` (rank 0's own output has already printed the line; a user-facing
    error is the same on every rank and rank 0 prints it).
    """
    comm = world()
    if comm.size == 1 or code in (0, 1):
        sys.exit(code)
    if not _STATE["collective"]:
        _leave_before_collective(comm, code, message)
    if message and code == 3 and _STATE["stderr"] is not None:
        _STATE["stderr"].write(f"{message} (rank {comm.rank})\n")
        _STATE["stderr"].flush()
    sys.stdout.flush()
    comm.abort(code)


def _leave_before_collective(comm: Comm, code: int, message: str) -> None:
    """End this rank after an error found during the set-up.

    Such errors (bad input, a usage error) are normally met alike by every rank; rank 0 prints the
    line. The ranks then agree on it (:func:`_all_ranks_reach`, up to ERROR_AGREEMENT seconds), and
    once all have met it every rank finalises MPI and exits with ``code``. Finalised ranks are not
    killed by the launcher when the first of them exits (MPICH's hydra kills the others of a rank
    that exits unfinalised, and may then report SIGKILL's 9 instead of ``code``), so mpiexec's status
    is ``code``.

    An error that some ranks meet alone (a restart file that one rank could not read) would leave
    the others waiting in their next collective step, and this rank's MPI_Finalize would wait for
    them: after the agreement's time the rank leaves without finalising (``os._exit``; the launcher
    then ends the others, with this exit status); a rank other than 0 first prints its own line."""
    agreed = _all_ranks_reach(comm, ERROR_AGREEMENT)
    if not agreed and comm.rank != 0 and message:
        _report(f"{message} (rank {comm.rank})")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if agreed:
        from mpi4py import MPI

        MPI.Finalize()
    os._exit(code)


#: the message tag of the set-up errors' agreement (:func:`_all_ranks_reach`): point-to-point
#: messages never match a collective step, which another rank may be in
ERROR_TAG = 27183


def _all_ranks_reach(comm: Comm, timeout: float) -> bool:
    """True when every other rank of ``comm`` also enters this within ``timeout`` seconds: each rank
    sends every other one a byte tagged ERROR_TAG and polls for theirs."""
    if comm.mpi is None:
        return False
    from mpi4py import MPI

    others = [r for r in range(comm.size) if r != comm.rank]
    mine = np.zeros(1, dtype=np.uint8)
    theirs = np.zeros(len(others), dtype=np.uint8)
    sends = [comm.mpi.Isend([mine, MPI.BYTE], dest=r, tag=ERROR_TAG) for r in others]
    receipts = [comm.mpi.Irecv([theirs[i:i + 1], MPI.BYTE], source=r, tag=ERROR_TAG) for i, r in enumerate(others)]
    deadline = time.monotonic() + timeout
    pause = 0.001
    while not MPI.Request.Testall(receipts):
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.05)
    MPI.Request.Waitall(sends)  # (matched: every other rank posted its receipts)
    return True


def end_on_signal(code: int) -> None:
    """End the job after SIGINT/SIGTERM (``code`` = 128 + N); the caller has printed its line, which
    reaches the terminal from rank 0 only (the others' output goes to /dev/null).

    Serial: a plain exit. Under MPI every rank must end, whatever the others are doing: the job is
    aborted. A rank other than 0 first waits PEER_PAUSE seconds (rank 0, if it got the signal too,
    ends the job with its own line meanwhile), then reports the signal itself.
    """
    comm = world()
    if comm.size == 1:
        sys.exit(code)
    if comm.rank != 0:
        time.sleep(PEER_PAUSE)
        _report(f"pwsim: interrupted by {signal.Signals(code - 128).name} (rank {comm.rank}); "
                "the job is ended, its output file keeps its last complete version")
    comm.abort(code)


def ignore_signals_when(predicate) -> None:
    """``predicate()`` true: a signal is to be ignored now (the job's output is complete, see
    pwsim.cli_common); the watchdog then leaves the job alone. None: never."""
    _STATE["signal_ignored"] = predicate


def _report(line: str) -> None:
    """One line on this rank's real stderr (also on a rank whose output goes to /dev/null)."""
    stream = _STATE["stderr"] or sys.__stderr__
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _watch_signals() -> None:
    """Start the signal watchdog of an MPI rank (main thread only; elsewhere nothing is done)."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:  # (a pipe's plain descriptors: no socket objects left for the interpreter's exit to warn about)
        receiver, sender = os.pipe()
        os.set_blocking(sender, False)
        signal.set_wakeup_fd(sender, warn_on_full_buffer=False)
    except (OSError, ValueError):
        return
    threading.Thread(target=_signal_watchdog, args=(receiver,), name="pwsim-signal-watchdog",
                     daemon=True).start()


def _signal_watchdog(receiver: int) -> None:
    """Woken by Python's C-level signal handler (the wakeup descriptor), which runs even while the
    main thread waits inside MPI (mpi4py releases the GIL there): after SIGNAL_GRACE (+ PEER_PAUSE
    on ranks other than 0) seconds with the process still alive, report and abort the job."""
    while True:
        try:
            data = os.read(receiver, 64)
        except OSError:
            return
        if not data:
            return
        ending = [n for n in data if n in ENDING_SIGNALS]
        if not ending:
            continue
        comm = world()
        time.sleep(SIGNAL_GRACE + (PEER_PAUSE if comm.rank else 0.0))
        ignored = _STATE["signal_ignored"]
        if signal.getsignal(ending[0]) is signal.SIG_IGN or (ignored is not None and ignored()):
            continue
        _report(f"pwsim: interrupted by {signal.Signals(ending[0]).name} (rank {comm.rank}, inside MPI or a long "
                "computation); the job is ended, its output file keeps its last complete version")
        comm.abort(128 + ending[0])


def device_for_rank(ndevices: int, environ=None) -> int | None:
    """The GPU this rank should use when several are visible: its index among the ranks of its node
    (from the launcher's variables) modulo ``ndevices``; None without MPI or with one device (the
    default device then). The cupy backend calls it before choosing its device."""
    environ = os.environ if environ is None else environ
    if ndevices < 2 or launched_size(environ) == 1:
        return None
    for name in LOCAL_RANK_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value) % ndevices
    return None


def describe_environment() -> str:
    """One line for ``pwsim info``: the MPI launch, or why there is none, and the thread rule."""
    n = launched_size()
    if n == 1:
        try:
            import importlib.util

            found = importlib.util.find_spec("mpi4py") is not None
        except (ImportError, ValueError):
            found = False
        return ("not launched by mpiexec (mpi4py " + ("installed" if found else "not installed: pip install 'pwsim[mpi]'")
                + "); threads: all cores, band FFTs and large products shared over host threads, BLAS one thread; "
                "one thread for calculations too small to share")
    return f"{world().size} ranks; one FFT thread per rank unless PWSIM_NUM_THREADS is set"


def _abort_on_exception(kind, value, traceback) -> None:
    stream = _STATE["stderr"] or sys.__stderr__
    first = str(value).strip().splitlines()[0] if str(value).strip() else ""
    stream.write(f"pwsim: error on rank {world().rank}: {kind.__name__}: {first}\n")
    stream.flush()
    world().abort(1)


# ------------------------------------------------------------------------------------ layout
def choose_pools(nranks: int, nkpoints: int) -> int:
    """The number of k-point pools for ``nranks`` ranks and ``nkpoints`` k-points (x spins).

    Model: an SCF step costs ceil(nk / P) k-point diagonalisations per pool, each sped up by the B =
    nranks / P ranks of a band group as 1 / (s + (1 - s) / B), s = BAND_SERIAL_FRACTION. The P
    (a divisor of nranks, at most nk) of least time wins; ties go to more pools (less communication).
    """
    best, best_time = 1, math.inf
    for pools in range(1, min(nranks, nkpoints) + 1):
        if nranks % pools:
            continue
        band = nranks // pools
        t = math.ceil(nkpoints / pools) * (BAND_SERIAL_FRACTION + (1 - BAND_SERIAL_FRACTION) / band)
        if t <= best_time * (1 + 1e-12):
            best, best_time = pools, t
    return best


@dataclass
class Layout:
    """How the ranks share the k-points and bands of one calculation.

    world:     all ranks; pool_comm: the ranks of this rank's pool (its band group)
    npools:    number of pools; pool: this rank's pool
    owner:     pool of every k-point, indexed like ``basis.kpoints`` (spin channels included)
    backend:   the array backend (device arrays go to the host for communication)
    """

    world: Comm
    npools: int
    pool: int
    pool_comm: Comm
    owner: tuple
    backend: object = None

    @property
    def size(self) -> int:
        return self.world.size

    def owns(self, kindex: int) -> bool:
        return self.owner[kindex] == self.pool

    def local(self, kpoints) -> list:
        """The k-points (objects with an ``index``) that this rank's pool diagonalises."""
        return [k for k in kpoints if self.owns(k.index)]

    def root_of(self, kindex: int) -> int:
        """World rank that broadcasts the contributions of k-point ``kindex`` (first rank of its pool)."""
        return self.owner[kindex] * (self.world.size // self.npools)

    def describe(self) -> str:
        nk = len(self.owner)
        band = self.world.size // self.npools
        return (f"parallel: {self.world.size} MPI ranks = {self.npools} k-point pool{'s' if self.npools > 1 else ''} "
                f"x {band} rank{'s' if band > 1 else ''} per band group ({nk} k-point{'s' if nk > 1 else ''} "
                f"and spin channel{'s' if nk > 1 else ''}, at most {-(-nk // self.npools)} per pool)")

    def ordered(self, contributions: dict, shape, dtype=np.float64, device: bool = True):
        """Yield (k, contribution) for every k-point in index order, on every rank.

        contributions: {k index: array of ``shape``} for the k-points this rank owns (every owned
        k-point must be present); backend device arrays, or host arrays with ``device=False``. The
        owner's first rank broadcasts each one; summing the yielded arrays in order gives the same
        floating-point result on any number of ranks.
        """
        bk = self.backend if device else None
        for k in range(len(self.owner)):
            part = contributions.get(k)
            if self.world.size > 1:
                root = self.root_of(k)
                host = bk.to_host(part) if (root == self.world.rank and bk is not None) else part
                host = self.world.Bcast_array(host, root, shape, dtype)
                part = bk.to_device(host) if bk is not None else host
            yield k, part

    def gather_to_root(self, contributions: dict) -> list | None:
        """{k index: host array} of the owned k-points -> the list over all k-points on rank 0
        (None elsewhere); for checkpoints and saved wavefunctions."""
        if self.world.size == 1:
            return [contributions[k] for k in range(len(self.owner))]
        # k-point by k-point as raw buffers, received straight into rank 0's arrays: a pickled gather
        # of every pool's orbitals held them twice on rank 0 (the pickles, then the arrays) and once
        # more on each sender (its pickle); only the shapes travel pickled. Each sender sends in k
        # order and rank 0 receives in k order (MPI keeps one source's messages in order)
        comm, rank = self.world.mpi, self.world.rank
        mine = {k: np.ascontiguousarray(v) for k, v in contributions.items() if rank == self.root_of(k)}
        layouts = comm.gather({k: (v.shape, v.dtype.str) for k, v in mine.items()}, root=0)
        if rank != 0:
            for k in sorted(mine):
                comm.Send(mine[k], dest=0, tag=GATHER_TAG)
            return None
        merged = dict(mine)
        sources = {k: source for source, part in enumerate(layouts) for k in part if source != 0}
        for k in range(len(self.owner)):
            if k not in merged:
                source = sources[k]
                shape, dtype = layouts[source][k]
                merged[k] = np.empty(shape, dtype)
                comm.Recv(merged[k], source=source, tag=GATHER_TAG)
        return [merged[k] for k in range(len(self.owner))]

    def occupation_sum(self, compute, occupations: np.ndarray) -> np.ndarray:
        """``compute(occupations)`` for a quantity that is a part independent of the occupations plus
        a sum over k-points linear in them (forces, stress), evaluated with each pool's own k-points.

        occupations: (nspin, nk, nbands) host, k-point index = spin * nk + k as in ``basis.kpoints``.
        Each rank computes the occupation-free part A = compute(0) and its pool's A + S_pool; the
        total A + sum_pools S_pool is summed in pool order on every rank. One rank: compute(occupations).
        """
        if self.npools == 1:
            return compute(occupations)
        nk = occupations.shape[1]
        zero = np.zeros_like(occupations)
        own = zero.copy()
        for index in range(len(self.owner)):
            if self.owns(index):
                own[index // nk, index % nk] = occupations[index // nk, index % nk]
        base = np.asarray(compute(zero), dtype=float)
        part = np.asarray(compute(own), dtype=float) - base
        roots = self.world.size // self.npools
        total = base
        for pool in range(self.npools):
            total = total + self.world.Bcast_array(part if self.pool == pool else None, pool * roots, base.shape)
        return total

    def gather_wavefunctions(self, wavefunctions: list) -> list:
        """Host copies of every k-point's wavefunctions: all of them on rank 0, this pool's (None for
        the others) on the other ranks. wavefunctions: per k-point a device array or None."""
        bk = self.backend
        local = {k: bk.to_host(w) for k, w in enumerate(wavefunctions) if w is not None and self.owns(k)}
        if self.world.size == 1:
            return [local[k] for k in range(len(self.owner))]
        everything = self.gather_to_root(local)
        if everything is not None:
            return everything
        return [local.get(k) for k in range(len(self.owner))]

    def band_group(self) -> BandGroup:
        """This rank's band group (the ranks of its pool), for the eigensolver."""
        return BandGroup(self.pool_comm, self.backend)


def _shared_operator(comm: Comm, bk, apply):
    """``apply`` applied chunk by chunk (:func:`band_chunks`), the chunks shared out over ``comm``
    and the results gathered, so every rank gets the whole block. The chunks depend on the block
    size only, never on the number of ranks: each row is computed by the same BLAS and FFT calls on
    any rank count, and the result is bit for bit the same (BLAS kernels sum in another order for
    another number of rows)."""

    def chunked(x):
        chunks = band_chunks(x.shape[0], SHARED_MIN_CHUNK)
        if comm.size == 1:
            parts = [apply(x[a:b, ...]) for a, b in chunks]
            return parts[0] if len(parts) == 1 else bk.xp.concat(parts, axis=0)
        owner = [j * comm.size // len(chunks) for j in range(len(chunks))]
        mine = [bk.to_host(apply(x[a:b, ...])) for (a, b), r in zip(chunks, owner) if r == comm.rank]
        rows = np.concatenate(mine) if mine else np.empty((0, *x.shape[1:]), dtype=bk.to_host(x[:0, ...]).dtype)
        counts = [sum(b - a for (a, b), r in zip(chunks, owner) if r == rank) for rank in range(comm.size)]
        return bk.to_device(comm.Allgather_rows(rows, counts))

    return chunked


def band_chunks(nbands: int, min_chunk: int | None = None) -> list[tuple[int, int]]:
    """Row ranges [a, b) in which H is applied to a block of ``nbands`` bands: at most MAX_CHUNKS
    chunks of an even number (at Gamma two real bands share one FFT) of at least ``min_chunk``
    (default MIN_CHUNK) rows."""
    size = max(MIN_CHUNK if min_chunk is None else min_chunk, 2 * -(-nbands // (2 * MAX_CHUNKS)))
    return [(a, min(a + size, nbands)) for a in range(0, nbands, size)]


def _span(ranges) -> tuple[int, int]:
    """The rows from the first to the last of the non-empty ranges (0, 0 if all are empty)."""
    used = [(a, b) for a, b in ranges if b > a]
    return (min(a for a, _ in used), max(b for _, b in used)) if used else (0, 0)


def even_split(n: int, parts: int) -> list[tuple[int, int]]:
    """[a, b) ranges cutting range(n) into ``parts`` contiguous pieces of sizes differing by at most 1."""
    return [(p * n // parts, (p + 1) * n // parts) for p in range(parts)]


class _RanksOfGroup:
    """The ranks of ``comm`` sharing work out by even contiguous ranges (BandGroup, GridShare)."""

    def __init__(self, comm: Comm, backend):
        self.comm = comm
        self.backend = backend
        self.size = comm.size
        self.rank = comm.rank

    def _own_range(self, n: int) -> tuple[int, int]:
        """This rank's [lo, hi) of ``n`` items split evenly in rank order."""
        return even_split(n, self.size)[self.rank]


class BandGroup(_RanksOfGroup):
    """The ranks of one pool as the block eigensolver sees them (pwsim.eigensolver, ``group=``).

    Distributed layout: every rank stores the columns ``columns(width)`` (its share of the plane-wave
    coefficients) of every band. Overlaps are local products summed with :meth:`sum`; H needs whole
    bands, so a block is transposed to whole rows of this rank's band chunks (:meth:`to_bands`, one
    Alltoallv), H is applied there, and the result transposed back (:meth:`to_columns`). Band chunks
    are :func:`band_chunks`, shared out as in the replicated scheme, so H sees the same rows on any
    rank count. Device arrays travel through host buffers.
    """

    def columns(self, width: int) -> tuple[int, int]:
        """The [lo, hi) columns of a block of ``width`` stored columns that this rank holds."""
        return self._own_range(width)

    def sum(self, array):
        """The sum over the group of a device array (small: overlap matrices, norms), on every rank."""
        if self.size == 1:
            return array
        bk = self.backend
        return bk.to_device(self.comm.Allreduce_sum(np.asarray(bk.to_host(array))))

    def row_ranges(self, chunks) -> list[tuple[int, int]]:
        """The rows [a, b) of a block whose H each rank applies: the chunks j (of n) go to rank
        j * size // n, a contiguous range of rows per rank (empty ranges for ranks without a chunk)."""
        return [(rounds[0][0], rounds[-1][1]) if rounds else (0, 0) for rounds in self._owned(chunks)]

    def _owned(self, chunks) -> list[list]:
        return [[c for j, c in enumerate(chunks) if j * self.size // len(chunks) == r] for r in range(self.size)]

    def rounds(self, chunks, row_bytes: int) -> list[list[list[tuple[int, int]]]]:
        """The chunks in rounds of transposes: round t gives every rank r the chunks rounds[t][r]
        (consecutive, an empty list once it has none), at most TRANSPOSE_BYTES of rows of
        ``row_bytes`` each but at least one chunk: few collectives for a small block, and never a
        whole large block in the transposes' buffers."""
        per_rank = []
        for mine in self._owned(chunks):
            groups, rows = [], 0
            for a, b in mine:
                if groups and (rows + b - a) * row_bytes <= TRANSPOSE_BYTES:
                    groups[-1].append((a, b))
                    rows += b - a
                else:
                    groups.append([(a, b)])
                    rows = b - a
            per_rank.append(groups)
        count = max(map(len, per_rank), default=0)
        return [[groups[t] if t < len(groups) else [] for groups in per_rank] for t in range(count)]

    def to_bands(self, block, ranges, width: int):
        """Columns -> bands: ``block`` (nrows, this rank's columns) -> (this rank's rows, width), the
        whole stored width of the rows ``ranges[rank]`` (ranges: one [a, b) per rank, any rows)."""
        bk = self.backend
        cols = even_split(width, self.size)
        a, b = ranges[self.rank]
        first, last = _span(ranges)
        # the rows first..last of the block (C-contiguous), sent from where they lie: no packing copy
        host = np.asarray(bk.to_host(block[first:last, :]))
        send_counts = [(r1 - r0) * block.shape[1] for r0, r1 in ranges]
        send_offsets = [(r0 - first) * block.shape[1] if r1 > r0 else 0 for r0, r1 in ranges]
        recv_counts = [(b - a) * (c1 - c0) for c0, c1 in cols]
        flat = self.comm.Alltoall_pieces(host, send_counts, recv_counts, send_offsets)
        rows = np.empty((b - a, width), dtype=host.dtype)
        offset = 0
        for (c0, c1), n in zip(cols, recv_counts):
            rows[:, c0:c1] = flat[offset:offset + n].reshape(b - a, c1 - c0)
            offset += n
        return bk.to_device(rows)

    def to_columns(self, rows, ranges, width: int, out) -> None:
        """Bands -> columns, the inverse of :meth:`to_bands`: ``rows`` (this rank's rows, width) are
        written, as this rank's columns of the rows ``ranges``, into ``out``."""
        bk = self.backend
        host = np.asarray(bk.to_host(rows))
        cols = even_split(width, self.size)
        lo, hi = cols[self.rank]
        send = np.concatenate([host[:, c0:c1].reshape(-1) for c0, c1 in cols]) if host.size else host.reshape(-1)
        send_counts = [host.shape[0] * (c1 - c0) for c0, c1 in cols]
        recv_counts = [(r1 - r0) * (hi - lo) for r0, r1 in ranges]
        first, last = _span(ranges)
        recv_offsets = [(r0 - first) * (hi - lo) if r1 > r0 else 0 for r0, r1 in ranges]
        if isinstance(out, np.ndarray) and out.flags.c_contiguous:  # host blocks: received in place
            self.comm.Alltoall_pieces(send, send_counts, recv_counts, None, out[first:last, :], recv_offsets)
            return
        flat = self.comm.Alltoall_pieces(send, send_counts, recv_counts, None,
                                         np.empty((last - first) * (hi - lo), dtype=host.dtype), recv_offsets)
        for (r0, r1), o in zip(ranges, recv_offsets):
            if r1 > r0:
                out[r0:r1, :] = bk.to_device(flat[o:o + (r1 - r0) * (hi - lo)].reshape(r1 - r0, hi - lo))

    def gather_columns(self, block, width: int, out) -> None:
        """Every rank's columns of ``block`` (nrows, this rank's columns) into out[:, :width], a range
        of rows at a time (TRANSPOSE_BYTES: the buffers stay small)."""
        bk = self.backend
        cols = even_split(width, self.size)
        nrows = block.shape[0]
        for r0, r1 in ranges(nrows, width * block.dtype.itemsize, TRANSPOSE_BYTES):
            host = np.asarray(bk.to_host(block[r0:r1, :]))
            flat = self.comm.Allgather_pieces(host, [(r1 - r0) * (c1 - c0) for c0, c1 in cols])
            offset = 0
            for c0, c1 in cols:
                n = (r1 - r0) * (c1 - c0)
                out[r0:r1, c0:c1] = bk.to_device(flat[offset:offset + n].reshape(r1 - r0, c1 - c0))
                offset += n

    def shared(self, apply):
        """The replicated scheme: ``apply`` on whole blocks, its chunks shared out and gathered."""
        return _shared_operator(self.comm, self.backend, apply)


class GridShare(_RanksOfGroup):
    """The grid work every rank of a band group would otherwise repeat on the whole FFT box (the
    XC functional point by point, a GGA's gradient and divergence transforms), shared out over the
    group's ranks and the results gathered, so that every rank holds the whole result.

    Same bits as one rank: a pointwise kernel gives the same number at a point whatever slice of
    the box it is called on (each rank takes a contiguous range of x-planes, :meth:`pointwise`),
    each Cartesian component of a gradient or divergence is transformed whole by one rank with the
    same FFT call as a serial run, and the divergence's components are added in the serial order
    (x, then y, then z) after they are gathered. A band group at Gamma (a molecule in a box) spends
    most of an SCF step on this replicated work (docs/parallel.md).
    """

    def planes(self, n1: int) -> tuple[int, int]:
        """This rank's [lo, hi) x-planes of a box with ``n1`` planes."""
        return self._own_range(n1)

    def gather_planes(self, part, n1: int):
        """Every rank's x-planes (axis -3 of ``part``: this rank's :meth:`planes`) -> the whole array
        (device), the planes in rank order."""
        bk = self.backend
        rows = np.ascontiguousarray(np.moveaxis(np.asarray(bk.to_host(part)), -3, 0))
        counts = [b - a for a, b in even_split(n1, self.size)]
        whole = self.comm.Allgather_rows(rows, counts)
        return bk.to_device(np.ascontiguousarray(np.moveaxis(whole, 0, -3)))

    def pointwise(self, kernel, *arrays, drop=()):
        """``kernel(*slices)`` on this rank's x-planes of ``arrays`` (each (..., n1, n2, n3) or None),
        every array field of its result (a dataclass, e.g. pwsim.xc.XCResult, fields (..., planes,
        n2, n3) or None) gathered whole: the same as ``kernel(*arrays)`` for a pointwise kernel.
        drop: names of fields the caller does not use (an XC potential's energy density): None in
        the result, on one rank too (so that a caller that used one fails at once on one rank), and
        not gathered."""
        import dataclasses

        if self.size == 1:
            out = kernel(*arrays)
            return dataclasses.replace(out, **{name: None for name in drop}) if drop else out
        n1 = next(a for a in arrays if a is not None).shape[-3]
        lo, hi = self.planes(n1)
        part = kernel(*(None if a is None else a[..., lo:hi, :, :] for a in arrays))
        whole = {f.name: None if f.name in drop else self.gather_planes(getattr(part, f.name), n1)
                 for f in dataclasses.fields(part) if getattr(part, f.name) is not None}
        return dataclasses.replace(part, **whole)

    def _owned(self, components: int, reverse: bool = False) -> list[int]:
        """The components (of ``components``) this rank transforms: contiguous in rank order (so a
        gather of rows returns them in order), the last ranks first when ``reverse`` (a divergence
        after a gradient: two components on each of two ranks in all)."""
        owner = [j * self.size // components for j in range(components)]
        if reverse:
            owner = [self.size - 1 - o for o in owner[::-1]]
        return [j for j in range(components) if owner[j] == self.rank], \
            [owner.count(r) for r in range(self.size)]

    def gradient(self, basis, f_real):
        """``basis.gradient(f_real)`` (3, n1, n2, n3), each component's inverse transform done by one
        rank: the one forward transform on every rank, the components gathered."""
        if self.size == 1:
            return basis.gradient(f_real)
        bk = self.backend
        f_half = bk.rfft3(f_real)
        mine, counts = self._owned(3)
        # (each component as basis.gradient forms it: the same bits)
        rows = [bk.to_host(bk.irfft3_times(f_half, 1, lambda _, a=a: _half_box_ig(basis, a), basis.fft_grid)[0])
                for a in mine]
        host = np.stack(rows) if rows else np.empty((0, *basis.fft_grid))
        return bk.to_device(self.comm.Allgather_rows(host, counts))

    def divergence(self, basis, v_real):
        """``basis.divergence(v_real)`` (n1, n2, n3) of a (3, n1, n2, n3) field (:meth:`divergence_of`)."""
        if self.size == 1:
            return basis.divergence(v_real)
        return self.divergence_of(basis, lambda a: v_real[a, ...])

    def divergence_of(self, basis, component):
        """The divergence (n1, n2, n3) of the field whose Cartesian component a is ``component(a)``
        (n1, n2, n3): each rank asks only for its components (so the others are never formed there),
        transforms them (times i G_a), the three are gathered and added in the serial order x, y, z,
        then the one inverse transform on every rank. One rank: ``basis.divergence`` of the stack."""
        bk = self.backend
        if self.size == 1:
            return basis.divergence_of(component)
        mine, counts = self._owned(3, reverse=True)
        rows = [bk.to_host(_times_ig(basis, a, bk.rfft3(component(a)))) for a in mine]
        half = (*basis.fft_grid[:2], basis.fft_grid[2] // 2 + 1)
        host = np.stack(rows) if rows else np.empty((0, *half), dtype=np.complex128)
        terms = bk.to_device(self.comm.Allgather_rows(host, counts))
        total = terms[0, ...]
        total += terms[1, ...]
        total += terms[2, ...]
        return bk.irfft3(total, basis.fft_grid)


def _times_ig(basis, a: int, f_half):
    """f_half *= i G_a, in place, as basis.divergence_of forms it (the same bits)."""
    f_half *= _half_box_ig(basis, a)
    return f_half


def _half_box_ig(basis, a: int):
    """i G_a (n1, n2, n3 // 2 + 1) on the half box of the real transforms: pwsim.basis's table (the one
    place that knows its layout, so that a per-component table there changes only this line)."""
    return basis._half_box_ig(a)


def grid_share(context) -> GridShare:
    """The :class:`GridShare` of the band group of a term context's layout (``context.layout``, set
    by pwsim.scf_setup); without a layout, with one rank in the group, or inside :func:`alone`, one
    whose methods are the serial ones (``basis.gradient``, ``kernel(*arrays)``, ...)."""
    layout = getattr(context, "layout", None)
    if layout is None or layout.pool_comm.size == 1 or getattr(context, "_alone", 0):
        return GridShare(Comm(), context.backend)
    return GridShare(layout.pool_comm, layout.backend)


class alone:  # (lower case: used like a function, ``with alone(context):``)
    """Inside the block this rank works on its own: :func:`grid_share` of ``context`` is the serial
    one, so a term evaluated here makes the serial calls (and no collective step of the band group).
    For work that one rank of the group does for all (:func:`one_rank`, :func:`by_owner`)."""

    def __init__(self, context):
        self.context = context

    def __enter__(self):
        self.context._alone = getattr(self.context, "_alone", 0) + 1
        return self.context

    def __exit__(self, *exc):
        self.context._alone -= 1
        return False


def _group_comm(context) -> Comm:
    """The band group's communicator of ``context`` (a one-rank one without a layout or inside :class:`alone`)."""
    layout = getattr(context, "layout", None)
    if layout is None or layout.pool_comm.size == 1 or getattr(context, "_alone", 0):
        return Comm()
    return layout.pool_comm


def _next_turn(context) -> int:
    """The number of :func:`one_rank` tasks of ``context`` so far (their owners go round the group), the
    same sequence on every rank (every rank of a group makes the same calls)."""
    turn = getattr(context, "_turn", 0)
    context._turn = turn + 1
    return turn


def deferring(context):
    """A context manager: inside it :func:`one_rank` calls that name an ``into`` attribute are collected,
    and on leaving they are done together (:func:`by_owner`: one task per rank at the same time, not one
    after the other) and their attributes set. pwsim.terms.Terms builds its terms inside one."""
    class Deferring:
        def __enter__(self):
            context._deferred = []
            return context

        def __exit__(self, exc_type, *exc):
            deferred, context._deferred = context._deferred, None
            if exc_type is None and deferred:
                values = by_owner(context, [compute for compute, _, _ in deferred])
                bk = context.backend
                for (_, (obj, attr), device), value in zip(deferred, values):
                    setattr(obj, attr, bk.to_device(value) if device else value)
            return False
    return Deferring()


def one_rank(context, compute, device: bool = True, into=None):
    """``compute()`` (an array: device with ``device``, else host) made by one rank of the band group
    of ``context`` (the next in turn, :func:`_next_turn`) in :class:`alone` and broadcast to the others:
    the bits of a serial call on every rank, the work done once. Every rank of the group must call it
    in the same order. For the set-up's box-sized arrays (the local potential, the core density, the
    starting density): several such tasks go to different ranks (docs/parallel.md, "Molecules in a box").
    into: (object, attribute) the value is for; inside :func:`deferring` the task is then only
    collected (None returned), done with the others and the attribute set when that block ends."""
    comm = Comm() if context is None else _group_comm(context)
    if comm.size == 1:
        return compute()
    if into is not None and getattr(context, "_deferred", None) is not None:
        # (compute returns host arrays here when device: by_owner sends host arrays)
        context._deferred.append(((lambda: bk_host(context, compute())) if device else compute, into, device))
        return None
    owner = comm.size - 1 - _next_turn(context) % comm.size  # (the last rank first: rank 0 also writes the output)
    bk = context.backend
    if comm.rank == owner:
        with alone(context):
            value = compute()
        host = np.ascontiguousarray(bk.to_host(value) if device else value)
        comm.bcast((host.shape, host.dtype.str), root=owner)
    else:
        shape, dtype = comm.bcast(None, root=owner)
        host = None
    host = comm.Bcast_array(host, owner, shape if comm.rank != owner else host.shape,
                            np.dtype(dtype if comm.rank != owner else host.dtype))
    return bk.to_device(host) if device else host


#: results of :func:`by_owner` tasks with more numbers than this go as raw buffers (MPI_Bcast), not pickled
BY_OWNER_PICKLED = 4096


def bk_host(context, value):
    """``value`` as a host array (the backend of ``context``)."""
    return np.asarray(context.backend.to_host(value))


def by_owner(context, tasks, costs=None) -> list:
    """``[task() for task in tasks]`` (each a host array or a Python object), each task done by one rank
    of the band group of ``context`` in :class:`alone` and broadcast: the serial bits on every rank.
    costs: a relative cost per task; the tasks go, dearest first, to the rank with the least work so far
    (ties: the highest rank, as rank 0 also writes the output), the same assignment on every rank.
    Every rank of the group must call it."""
    comm = _group_comm(context)
    if comm.size == 1:
        return [task() for task in tasks]
    costs = [1.0] * len(tasks) if costs is None else list(costs)
    load = [0.0] * comm.size
    owner = [0] * len(tasks)
    for j in sorted(range(len(tasks)), key=lambda j: -costs[j]):
        r = min(range(comm.size), key=lambda r: (load[r], -r))
        owner[j] = r
        load[r] += costs[j]
    mine, big = {}, {}
    with alone(context):
        for j, task in enumerate(tasks):
            if owner[j] == comm.rank:
                mine[j] = task()
                if isinstance(mine[j], np.ndarray) and mine[j].size > BY_OWNER_PICKLED:
                    big[j] = np.ascontiguousarray(mine[j])
                    mine[j] = (big[j].shape, big[j].dtype.str)  # sent below, as a raw buffer
    # one exchange of the small results (forces, stresses: a few numbers per task), then the arrays
    everything, sizes = {}, set()
    for r, part in enumerate(comm.allgather((mine, sorted(big)))):
        everything.update(part[0])
        sizes.update(part[1])
    for j in sorted(sizes):
        shape, dtype = everything[j]
        everything[j] = comm.Bcast_array(big.get(j), owner[j], shape, np.dtype(dtype))
    return [everything[j] for j in range(len(tasks))]


#: keys of ``[run] parallel``
OPTIONS = ("pools",)


def check_options(options) -> None:
    """Validate ``[run] parallel`` (a dict or None); raises InputError."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise InputError(f"[run] parallel must be a table such as {{ pools = 2 }}, got {options!r}")
    for key, value in options.items():
        if key not in OPTIONS:
            raise InputError(f"[run] parallel: unknown key {key!r} (known: {', '.join(OPTIONS)})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"[run] parallel: {key} must be a positive integer, got {value!r}")


def pools_problem(pools: int | None, nranks: int | None = None) -> str | None:
    """Why the user's ``pools`` cannot run on ``nranks`` ranks (default: the ranks launched), or None.
    Under MPI it must divide the number of ranks; one rank ignores it (the same input runs serially)."""
    nranks = world().size if nranks is None else nranks
    if pools is None or nranks == 1 or nranks % pools == 0:
        return None
    divisors = ", ".join(str(p) for p in range(1, nranks + 1) if nranks % p == 0)
    return f"pools = {pools} does not divide the {nranks} MPI ranks (choose one of {divisors})"


def check_pools(pools: int | None, nranks: int | None = None) -> None:
    """Raise InputError if :func:`pools_problem` finds one."""
    why = pools_problem(pools, nranks)
    if why is not None:
        raise InputError(f"[run] parallel: {why}")


def choose_layout(nkpoints: int, backend=None, pools: int | None = None, comm: Comm | None = None) -> Layout:
    """The layout for ``nkpoints`` k-points (x spins) on the ranks of ``comm`` (default: all).

    pools: the user's choice (``[run] parallel = { pools = P }``): under MPI it must divide the
    number of ranks (:func:`check_pools`); it is capped at the number of k-points (a pool needs one),
    and one rank ignores it (so the same input runs serially).
    """
    comm = world() if comm is None else comm
    nranks = comm.size
    if pools is None:
        pools = choose_pools(nranks, nkpoints)
    check_pools(pools, nranks)
    pools = min(pools, nranks, nkpoints)
    if nranks % pools:
        raise InputError(f"[run] parallel: pools = {pools} (capped at the {nkpoints} k-points and spin channels) "
                         f"does not divide the {nranks} MPI ranks")
    band = nranks // pools
    pool = comm.rank // band
    owner = tuple(k * pools // nkpoints for k in range(nkpoints))
    return Layout(comm, pools, pool, comm.split(pool, comm.rank), owner, backend)


def serial_layout(nkpoints: int, backend=None) -> Layout:
    """The one-rank layout (every k-point local), e.g. for post-processing on one rank."""
    single = Comm()
    return Layout(single, 1, 0, single, (0,) * nkpoints, backend)
