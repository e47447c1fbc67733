"""``python -m sghost`` runs the command line."""

import sys

from sghost.cli import main

sys.exit(main())
