"""``python -m benchmarks`` (run from the repository root); see benchmarks/cli.py and docs/benchmarks.md."""
import sys

from .cli import main

sys.exit(main())
