"""``python -m medusa_mtl.cli ...`` is the ``medusa`` command."""

import sys

from . import main

sys.exit(main())
