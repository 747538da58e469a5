"""python -m workbench: the command line (workbench/cli.py), as the prune-workbench script."""

from workbench.cli import main

raise SystemExit(main())
