"""Imports every architecture module so that each registers itself. Add new architectures here."""

from . import (
    medusa,  # noqa: F401
    mt_baseline,  # noqa: F401
    mtan,  # noqa: F401
    mtinet,  # noqa: F401
    padnet,  # noqa: F401
    single_task,  # noqa: F401
)
