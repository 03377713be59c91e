# Finite differences of the pw.x total energy along traceless strains (checks pw.x's analytic stress).
# Usage: python qe_strain_finite_differences.py ECUTWFC_RY   (needs pw.x and ./pseudos/Si-q4.pade.gth)
import numpy as np, subprocess, re, sys
a=10.26
A0=a/2*np.array([[0,1,1],[1,0,1],[1,1,0.]])
eps=np.array([[0.012,0.006,-0.004],[0.006,-0.009,0.003],[-0.004,0.003,0.005]])
A=np.round(A0@(np.eye(3)+eps),10)
ecutwfc=float(sys.argv[1]) if len(sys.argv)>1 else 30.0
def run(Ad, tag):
    cell="\n".join(" ".join(f"{x:.12f}" for x in row) for row in Ad)
    inp=f"""&control
  calculation='scf', prefix='{tag}', pseudo_dir='./pseudos', outdir='./tmp',
  tprnfor=.true., tstress=.true., disk_io='none'
/
&system
  ibrav=0, nat=2, ntyp=1, ecutwfc={ecutwfc}, ecutrho={4*ecutwfc}, input_dft='PW', nosym=.true.
/
&electrons
  conv_thr=1.0d-13
/
ATOMIC_SPECIES
Si 28.0855 Si-q4.pade.gth
CELL_PARAMETERS bohr
{cell}
ATOMIC_POSITIONS crystal
Si 0.0 0.0 0.0
Si 0.27 0.24 0.265
K_POINTS automatic
4 4 4 0 0 0
"""
    out=subprocess.run(["pw.x"],input=inp,capture_output=True,text=True).stdout
    E=float(re.search(r"!\s+total energy\s+=\s+(\S+)",out).group(1))/2
    i=out.index("total   stress")
    S=np.array([[float(x) for x in l.split()[:3]] for l in out[i:].splitlines()[1:4]])/2
    return E,S
E0,S0=run(A,"c")
V=abs(np.linalg.det(A))
print("E0",E0); print("QE sigma (Ha/bohr3, QE sign)\n",S0)
dirs={"xx-yy":np.diag([1,-1,0.]),"xy":np.array([[0,1,0],[1,0,0],[0,0,0.]]),
      "xz":np.array([[0,0,1],[0,0,0],[1,0,0.]]),"iso":np.eye(3)}
for name,D in dirs.items():
    for h in (1e-3,):
        Ep,_=run(A@(np.eye(3)+h*D).T,"p"); Em,_=run(A@(np.eye(3)-h*D).T,"m")
        print(name,h,"(1/V)dE/dh =",(Ep-Em)/(2*h)/V, " QE stress contraction (-sum D*S) =", -np.sum(D*S0), flush=True)
