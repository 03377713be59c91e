"""phx_frequencies.json from h2o.ph.out: the frequencies (cm-1) at Gamma."""
import json
import re

text = open("h2o.ph.out").read().split("Diagonalizing the dynamical matrix")[-1]
nu = [float(x) for x in re.findall(r"freq \(\s*\d+\) =\s*\S+ \[THz\] =\s*(\S+) \[cm-1\]", text)]
json.dump({"qpoints_fractional": [[0.0, 0.0, 0.0]], "frequencies_cm1": [nu]}, open("phx_frequencies.json", "w"),
          indent=1)
