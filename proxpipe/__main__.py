"""python -m proxpipe: the proxpipe command."""

import sys

from proxpipe.wiring.cli import main

sys.exit(main())
