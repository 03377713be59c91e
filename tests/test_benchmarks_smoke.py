"""The benchmark runner must not rot: its --quick smoke mode runs pwsim on a tiny case.

Speed is never asserted here (see benchmarks/ and docs/benchmarks.md for the figures)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_mode_runs():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "si2_quick" in proc.stdout and "pwsim" in proc.stdout
    assert "Traceback" not in proc.stderr
