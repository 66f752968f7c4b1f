"""``medusa fit|validate|test``: LightningCLI over :class:`MultiTaskModule` and :class:`MultiTaskDataModule`.

Configs compose: ``--config medusa:data/nyud.yaml --config medusa:model/medusa.yaml --config
medusa:profile/paper.yaml`` (``medusa:`` names a config shipped in the package, see ``medusa configs``; any
path works too); any key can be overridden on the command line (``--data.root DIR``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from ..engine.training import MultiTaskDataModule, MultiTaskModule, complete_trainer_config
from ..errors import ConfigError, raised_in
from .configs import config_files, resolve_config_args


class SaveRunConfig(SaveConfigCallback):
    """``config.yaml`` is the fit's: the file ``medusa fit --config`` runs again. ``medusa validate|test`` log into
    ``<default_root_dir>/validate`` (``/test``) and save their config there; where their log folder is the run
    folder itself (``--trainer.logger false``) they save it as ``config.validate.yaml`` (``config.test.yaml``)
    instead of replacing the fit's."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        stage_name = str(getattr(stage, "value", stage))  # a TrainerFn
        if stage_name != "fit" and trainer.log_dir is not None and trainer.default_root_dir is not None \
                and Path(trainer.log_dir).resolve() == Path(trainer.default_root_dir).resolve():
            self.config_filename = f"config.{stage_name}.yaml"
        super().setup(trainer, pl_module, stage)


class MedusaCLI(LightningCLI):
    """LightningCLI with the project's trainer defaults (atomic checkpoints, last+best, TB+CSV loggers)."""

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        # validate / test log into a sub-folder of the run: their metrics.csv, events and config.yaml replaced the
        # fit's (its config.yaml then no longer fitted: `verbose` is not a fit option, and ckpt_path resumed)
        sub = self.subcommand if self.subcommand not in (None, "fit") else None
        return super()._instantiate_trainer(complete_trainer_config(config, log_subdir=sub), callbacks)

    def before_instantiate_classes(self) -> None:
        """The module's optimizer and poly schedule (``--model.optimizer`` / ``lr`` / ...) are the only ones:
        LightningCLI's ``--optimizer`` / ``--lr_scheduler`` replaced them silently and unrecorded. Refused when
        set; kept as options because every saved ``config.yaml`` holds them as ``null``. A fit's
        ``--model.metric_options`` for a task the model does not score are refused too (kept, used nowhere)."""
        sub = self.config.get("subcommand")
        section = self.config[sub] if sub else self.config
        for key in ("optimizer", "lr_scheduler"):
            if section.get(key) is not None:
                raise ConfigError(f"--{key}: not used by medusa-mtl models (they are trained with --model.optimizer "
                                  "adam|sgd, --model.lr, --model.weight_decay, --model.momentum and a poly schedule "
                                  "with --model.poly_power); leave it out")
        model = section.get("model")
        ckpt_path = section.get("ckpt_path")
        if sub == "fit" and model is not None and not (ckpt_path and Path(str(ckpt_path)).is_file()):
            # a fit's own config (a resumed one's model is the checkpoint's, a UFL source's options carry over)
            from ..engine.training import _as_list, ufl_steps, unscored_metric_options

            steps = ufl_steps(model.get("ufl"))
            scored = _as_list(steps[-1].get("new_tasks") if steps else model.get("tasks")) or []
            unused = unscored_metric_options(model.get("metric_options"), scored)
            if unused:
                raise ConfigError(f"--model.metric_options: options for {', '.join(map(repr, unused))}, which the "
                                  f"model does not score (its scored tasks: {', '.join(scored)}; auxiliary tasks "
                                  "are trained, never scored): they would not be used; leave them out")

    def _parse_ckpt_path(self) -> None:
        """Lightning builds the model from the hyper-parameters a ``--ckpt_path`` file records, over the config's:
        a file it cannot read is explained by the project's checks (a one-line error, not an unpickling
        traceback), and every model setting it replaces is reported. ``validate`` / ``test`` build the model
        without its backbone initialisation (``pretrained_file``, timm's ``pretrained``): the checkpoint's weights
        replace it."""
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry") and Path(ckpt_path).is_dir():
            from ..engine.checkpoints import folder_not_checkpoint
            from ..errors import CheckpointError

            raise CheckpointError(f"--ckpt_path {folder_not_checkpoint(Path(ckpt_path))}")
        if ckpt_path == "last":
            from ..engine.training import last_checkpoint_file

            # the file Lightning's "last" finds with the default checkpoint callbacks: resolved here so that its
            # recorded settings are applied and reported like an explicit path's (they were skipped)
            candidate = last_checkpoint_file(self.config[sub].get("trainer"))
            if candidate is not None and candidate.is_file():
                ckpt_path = str(candidate)
                self.config[sub]["ckpt_path"] = ckpt_path
        if ckpt_path == "best" and sub in ("validate", "test"):
            from ..engine.training import best_checkpoint_file

            # Lightning's "best" is the best_model_path of a fit in the same process: a validate / test of its own
            # stopped with a ValueError traceback ("ModelCheckpoint is not configured to save the best model")
            candidate = best_checkpoint_file(self.config[sub].get("trainer"))
            if candidate is not None:
                if not candidate.is_file():
                    raise ConfigError(f"--ckpt_path best: {candidate} does not exist (no run in this "
                                      "--trainer.default_root_dir has validated yet); give the checkpoint's path")
                ckpt_path = str(candidate)
                self.config[sub]["ckpt_path"] = ckpt_path
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return super()._parse_ckpt_path()
        before = _flat(self.config[sub].get("model"))
        try:
            super()._parse_ckpt_path()
        except Exception:
            from ..engine.checkpoints import load_checkpoint

            load_checkpoint(ckpt_path)  # an unreadable file: its CheckpointError says so in one line
            raise
        if sub in ("validate", "test"):
            # the checkpoint's weights replace the backbone's initial ones: building the model must not need the
            # file the fit started from (gone on another machine), nor timm's download (as `medusa evaluate`)
            _drop_backbone_init(self.config[sub].get("model"))
            before = _flat(_drop_backbone_init(before))
        after = _flat(self.config[sub].get("model"))
        changed = [f"{k} {after[k]!r} (config: {before[k]!r})" for k in sorted(after)
                   if k in before and before[k] != after[k] and (before[k] or after[k])]  # None and {} alike
        if changed:
            print(f"medusa {sub}: note: the model is built as {ckpt_path} records it: {'; '.join(changed)}",
                  file=sys.stderr)


def _drop_backbone_init(model: Any) -> Any:
    """``model`` (a parsed ``--model`` namespace or dict) without the backbone's initialisation: no
    ``pretrained_file``, no ``pretrained`` in ``model_kwargs``. Changed in place; returned."""
    if model is None:
        return model
    model["pretrained_file"] = None
    kwargs = model.get("model_kwargs")
    if isinstance(kwargs, dict) and "pretrained" in kwargs:
        model["model_kwargs"] = {k: v for k, v in kwargs.items() if k != "pretrained"}
    return model


def _flat(namespace: Any) -> dict[str, Any]:
    if namespace is None:
        return {}
    return dict(namespace.as_dict() if hasattr(namespace, "as_dict") else namespace)


def run_lightning_cli(argv: list[str]) -> int:
    """Run a LightningCLI sub-command with ``argv`` (``["fit", "--config", ...]``)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from ..data.formats import DataFormatError
    from ..errors import is_user_error

    # Parse errors (an option or config key that does not exist, a value of the wrong type) raise instead of
    # printing the whole usage; abbreviations are refused so that a misspelt key is an error, not a guess.
    parser_kwargs: dict[str, Any] = {"exit_on_error": False, "allow_abbrev": False}
    parser_kwargs.update({cmd: {"exit_on_error": False} for cmd in ("fit", "validate", "test", "predict")})
    if _has_omegaconf():
        parser_kwargs["parser_mode"] = "omegaconf"
    cmd = argv[0] if argv else "fit"
    try:
        argv = resolve_config_args(argv)
        _check_yaml_files(argv)
        # sys.argv rather than args=: LightningCLI warns that args= is meant for calls from Python code
        saved_argv = sys.argv
        sys.argv = ["medusa", *argv]
        try:
            MedusaCLI(
                MultiTaskModule,
                MultiTaskDataModule,
                save_config_callback=SaveRunConfig,
                save_config_kwargs={"overwrite": True},
                parser_kwargs=parser_kwargs,
                seed_everything_default=0,
            )
        finally:
            sys.argv = saved_argv
    except argparse.ArgumentError as err:
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"medusa {cmd}: error: {message} (see `medusa {cmd} --help`)", file=sys.stderr)
        return 2
    except MisconfigurationException as err:  # a Trainer option Lightning refuses (accelerator, limits, ...)
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"medusa {cmd}: error: {message} (Lightning; see `medusa {cmd} --help`)", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if _lightning_setting_error(err):
            message = " ".join(str(err).split())
            print(f"medusa {cmd}: error: {message} (Lightning; see `medusa {cmd} --help`)", file=sys.stderr)
            return 2
        if not is_user_error(err):
            raise
        message = str(err)
        if isinstance(err, DataFormatError):
            message += (" (`medusa data check --dataset D --root DIR`, or `--dataset path/to/dataset.yaml`, "
                        "lists every problem of a dataset)")
        print(f"medusa {cmd}: error: {message}", file=sys.stderr)
        return 2
    return 0


#: (module, function) of the Lightning checks that raise a plain RuntimeError / ValueError about the user's settings:
#: an EarlyStopping monitoring a metric the model does not log (ModelCheckpoint's counterpart is a
#: MisconfigurationException), a --ckpt_path of "best" / "hpc" with nothing to find
_LIGHTNING_SETTING_CHECKS = (
    (RuntimeError, "lightning.pytorch.callbacks.early_stopping", "_validate_condition_metric"),
    (ValueError, "lightning.pytorch.trainer.connectors.checkpoint_connector", "_parse_ckpt_path"),
)


def _lightning_setting_error(err: BaseException) -> bool:
    """``err`` is one of Lightning's checks of a setting (see ``_LIGHTNING_SETTING_CHECKS``): its message is for the
    user."""
    where = raised_in(err)
    return where is not None and any(type(err) is cls and where == (module, fn)
                                     for cls, module, fn in _LIGHTNING_SETTING_CHECKS)


def _check_yaml_files(argv: list[str]) -> None:
    """A ``--config`` / ``-c`` file that is not valid YAML is named (the config parser reports a
    ``<unicode string>``)."""
    from ..options import load_yaml

    for name in config_files(argv):
        if Path(name).is_file():  # the parser's own message names a missing file
            load_yaml(name)


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True
