import sys

from modelforge.cli import main

sys.exit(main())
