"""abinit_stress.json from si_xx.abo and si_yz.abo: the last "Cartesian components of stress tensor
(hartree/bohr^3)" block of each, the lattice (rprim rows, bohr), etotal and the FFT box."""
import json
import re

out = {}
for name in ("xx", "yz"):
    text = open(f"si_{name}.abo").read()
    block = text.split("Cartesian components of stress tensor (hartree/bohr^3)")[-1]
    v = {k: float(x) for k, x in re.findall(r"sigma\((\d \d)\)=\s*(\S+)", block)[:6]}
    stress = [[v["1 1"], v["2 1"], v["3 1"]], [v["2 1"], v["2 2"], v["3 2"]], [v["3 1"], v["3 2"], v["3 3"]]]
    abi = open(f"si_{name}.abi").read()
    rprim = [float(x) for x in re.search(r"^rprim (.*)$", abi, re.M).group(1).split()]
    ngfft = [int(x) for x in re.search(r"^ngfft (.*)$", abi, re.M).group(1).split()]
    etot = float(re.findall(r"etotal\s+(\S+)", text)[-1].replace("D", "E"))
    out[name] = {"stress": stress, "lattice": [rprim[0:3], rprim[3:6], rprim[6:9]], "etotal": etot}
    out["ngfft"] = ngfft
json.dump(out, open("abinit_stress.json", "w"), indent=1)
