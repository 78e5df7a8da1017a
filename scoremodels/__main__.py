import sys

from scoremodels.cli import main

sys.exit(main())
