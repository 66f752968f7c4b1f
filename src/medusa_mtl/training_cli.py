"""``medusa fit|validate|test``: LightningCLI over :class:`MultiTaskModule` and :class:`MultiTaskDataModule`.

Configs compose: ``--config configs/data/nyud.yaml --config configs/model/medusa.yaml --config
configs/profile/paper.yaml``; any key can be overridden on the command line (``--data.root DIR``).
"""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch.cli import LightningCLI

from .training import MultiTaskDataModule, MultiTaskModule, complete_trainer_config


class MedusaCLI(LightningCLI):
    """LightningCLI with the project's trainer defaults (atomic checkpoints, last+best, TB+CSV loggers)."""

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        return super()._instantiate_trainer(complete_trainer_config(config), callbacks)


def run_lightning_cli(argv: list[str]) -> int:
    """Run a LightningCLI sub-command with ``argv`` (``["fit", "--config", ...]``)."""
    from .errors import is_user_error

    try:
        MedusaCLI(
            MultiTaskModule,
            MultiTaskDataModule,
            args=argv,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "omegaconf"} if _has_omegaconf() else None,
            seed_everything_default=0,
        )
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if not is_user_error(err):
            raise
        print(f"medusa {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True
