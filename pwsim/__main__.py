"""``python -m pwsim``: the ``pwsim`` command line (see :mod:`pwsim._entry`)."""
import sys

from ._entry import main

sys.exit(main())
