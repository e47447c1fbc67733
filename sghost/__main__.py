"""``python -m sghost`` runs the command line."""

import sys

from sghost.cli.main import main

sys.exit(main())
