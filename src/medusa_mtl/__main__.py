"""``python -m medusa_mtl ...`` is the ``medusa`` command (as ``python -m medusa_mtl.cli``)."""

import sys

from .cli import main

sys.exit(main())
