"""Run one program in a child process and measure it: wall time, CPU time, peak resident memory.

The child's resource usage comes from ``os.wait4`` on that very process, so it is the child's
own (and that of any grandchildren it waited for; ``ru_maxrss`` is then the largest single
process, not a sum). Threads are pinned through the environment before the child starts.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "PWSIM_NUM_THREADS")


def pinned_environment(threads: int = 1, extra: dict | None = None) -> dict:
    """The current environment with every thread-count knob set to ``threads``."""
    env = dict(os.environ)
    for var in THREAD_VARIABLES:
        env[var] = str(threads)
    env["OMP_PROC_BIND"] = env.get("OMP_PROC_BIND", "false")
    # pw.x from Debian is an Open MPI program; running it directly (MPI singleton) as root is fine,
    # mpirun needs these two
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    if extra:
        env.update(extra)
    return env


@dataclass
class Measurement:
    command: list
    returncode: int
    wall: float  # seconds, from just before the fork to the reaping of the child
    user: float  # CPU seconds of the child (and its reaped children)
    system: float
    max_rss_mib: float  # peak resident set size, MiB
    load_before: tuple = ()
    load_after: tuple = ()
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    timed_out: bool = False

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def to_dict(self) -> dict:
        return {"command": [str(c) for c in self.command], "returncode": self.returncode, "wall_s": self.wall,
                "user_s": self.user, "system_s": self.system, "cpu_s": self.cpu, "max_rss_mib": self.max_rss_mib,
                "timed_out": self.timed_out, "loadavg_before": list(self.load_before),
                "loadavg_after": list(self.load_after)}


def run_measured(command: list, env: dict, cwd: str | None = None, timeout: float | None = None,
                 stdin_file: str | None = None) -> Measurement:
    """Run ``command`` to completion and return its measurement with the captured output."""
    load_before = os.getloadavg()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = open(stdin_file, "rb") if stdin_file else subprocess.DEVNULL
        try:
            t0 = time.perf_counter()
            proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err, stdin=stdin)
            timed_out = False
            deadline = None if timeout is None else t0 + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    proc.kill()
                    timed_out = True
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.005)
            wall = time.perf_counter() - t0
        finally:
            if stdin_file:
                stdin.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    # Linux reports ru_maxrss in KiB, macOS in bytes
    rss = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return Measurement(list(command), proc.returncode, wall, usage.ru_utime, usage.ru_stime, rss, load_before,
                       os.getloadavg(), stdout, stderr, timed_out)


# ------------------------------------------------------------------------------ the machine
def machine_info() -> dict:
    info = {"hostname": platform.node(), "platform": platform.platform(), "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg())}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return info


def git_revision(repo: str, sources: str | None = None) -> dict:
    """Commit of ``repo``, whether pwsim/ has local changes, and a SHA-256 over the pwsim sources
    in ``sources`` (a snapshot) or ``repo``."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    # the working tree changes under our feet while people work: fingerprint the pwsim sources actually run
    digest = hashlib.sha256()
    package = os.path.join(sources or repo, "pwsim")
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    digest.update(os.path.relpath(os.path.join(root, name), package).encode() + b"\0" + f.read())
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no",
                                                                    "--", "pwsim")),
            "pwsim_sources_sha256": digest.hexdigest()}


def which(program: str) -> str | None:
    return shutil.which(program)
