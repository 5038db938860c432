"""`python -m fusedfs` is the `fusedfs` command."""

import sys

from fusedfs.cli import main

sys.exit(main())
