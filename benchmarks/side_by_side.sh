#!/usr/bin/env bash
# pwsim against pw.x on 1 and 2 cores, side by side (issues 14 and 15): pwsim on 1 thread, 2 threads
# and 2 MPI ranks; pw.x on 1 rank and 2 MPI ranks. Whole processes under GNU time: wall (s),
# user+sys CPU (s), max RSS (KiB; under mpiexec the largest rank). Run from anywhere on a quiet machine;
# pw.x must link OpenBLAS (Debian: apt-get install libopenblas0-pthread), not the reference BLAS.
#   CASES="si64_gamma al" OUT=side_by_side.log benchmarks/side_by_side.sh
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
OUT=$(realpath -m "${OUT:-side_by_side.log}")
PWX_MPIRUN=${PWX_MPIRUN:-/usr/bin/mpirun --oversubscribe}  # the MPI pw.x was built with (Debian: Open MPI), not a pip mpich
W=$(mktemp -d)
PY=$(python -c 'import sys; print(sys.executable)')  # the interpreter itself, not a pyenv shim (~0.08 s of bash)
MPIEXEC=${MPIEXEC:-$(dirname "$PY")/mpiexec}  # the [mpi] extra's launcher next to it (pip mpich), also unshimmed
[ -x "$MPIEXEC" ] || MPIEXEC=mpiexec
"$PY" -m compileall -q pwsim benchmarks >/dev/null  # bytecode, as an installed copy has (this machine sets PYTHONDONTWRITEBYTECODE)
python -m benchmarks --write-inputs "$W" --cases ${CASES:-si64_gamma al} >/dev/null
t() { local label=$1; shift; echo "== $label load=$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT"
  /usr/bin/time -f "TIME $label wall=%e cpu=%U+%S maxrss_kib=%M" "$@" >>"$OUT" 2>&1; }
for case in ${CASES:-si64_gamma al}; do
  t "pwsim $case 1thread" env PWSIM_NUM_THREADS=1 "$PY" benchmarks/run_case.py "$case"
  t "pwsim $case 2threads" env PWSIM_NUM_THREADS=2 "$PY" benchmarks/run_case.py "$case"
  t "pwsim $case mpi2" "$MPIEXEC" -n 2 "$PY" benchmarks/run_case.py "$case"
  (cd "$W" && t "pw.x $case 1rank" pw.x -in "$case.pwi")
  (cd "$W" && t "pw.x $case mpi2" $PWX_MPIRUN -np 2 pw.x -in "$case.pwi")
done
grep -E "^(TIME|rank|!)" "$OUT"
