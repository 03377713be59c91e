#!/usr/bin/env bash
# Hybrid functionals, pwsim against pw.x 6.7 (issue 24): the whole `pwsim run` and the whole pw.x run,
# both computing forces and stress, one thread each, the same priority. Whole processes under GNU time:
# wall (s), user+sys CPU (s), max RSS (KiB). On a shared machine compare the CPU times.
#   OUT=hybrid.log benchmarks/hybrid/side_by_side.sh            (PWSIM=path/to/a/pwsim/checkout to compare)
# RANKS=2: both on 2 MPI ranks, `mpiexec -n 2 pwsim run` (the MPICH of mpi4py, next to python: MPIEXEC)
# against `mpirun -np 2 pw.x $PWX_FLAGS` (Debian's Open MPI: PWX_MPIRUN). GNU time then sums the CPU of
# both ranks (and of the launchers); its max RSS is that of the largest single process (one rank).
# Both MPIs poll while a rank waits in a collective: that wait counts as CPU too.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${PWSIM:-$(cd "$HERE/../.." && pwd)}
OUT=$(realpath -m "${OUT:-hybrid.log}")
PSEUDOS=${PSEUDOS:-$HERE/../../../shared/reference/pseudos/psp10}  # Si-q4, O-q6, H-q1 .pbe.gth (pw.x)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PWSIM_NUM_THREADS=1
RANKS=${RANKS:-1}
MPIEXEC=${MPIEXEC:-$(dirname "$(python -c 'import sys; print(sys.executable)')")/mpiexec}
PWX_MPIRUN=${PWX_MPIRUN:-/usr/bin/mpirun}
PWX_FLAGS=${PWX_FLAGS:-}
if [ "$RANKS" -gt 1 ]; then
  PWSIM_RUN=("$MPIEXEC" -n "$RANKS" python -m pwsim.cli run)
  PWX_RUN=("$PWX_MPIRUN" --allow-run-as-root -np "$RANKS" pw.x $PWX_FLAGS)
else
  PWSIM_RUN=(python -m pwsim.cli run)
  PWX_RUN=(pw.x $PWX_FLAGS)
fi
W=$(mktemp -d)
cp "$HERE"/*.toml "$HERE"/*.pwi "$W"/ && mkdir -p "$W/pseudos" && cp "$PSEUDOS"/{Si-q4,O-q6,H-q1}.pbe.gth "$W/pseudos/"
t() { local label=$1; shift; echo "== $label load=$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT"
  /usr/bin/time -f "TIME $label wall=%e cpu=%U+%S maxrss_kib=%M" "$@" >>"$OUT" 2>&1; }
cd "$W"
for case in ${CASES:-h2o_pbe0 si_k3_pbe0}; do
  t "pwsim $case ranks=$RANKS" env PYTHONPATH="$ROOT" "${PWSIM_RUN[@]}" "$case.toml"
  t "pw.x $case ranks=$RANKS $PWX_FLAGS" "${PWX_RUN[@]}" -in "$case.pwi"
done
grep -E "^(TIME|==)" "$OUT"
