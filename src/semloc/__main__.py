import sys

from semloc.cli import main

sys.exit(main())
