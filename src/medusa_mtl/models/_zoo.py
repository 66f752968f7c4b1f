"""Imports every architecture module so that each registers itself. Add new architectures here."""

from . import single_task  # noqa: F401
from . import mt_baseline  # noqa: F401
from . import mtan  # noqa: F401
from . import padnet  # noqa: F401
from . import mtinet  # noqa: F401
from . import medusa  # noqa: F401
