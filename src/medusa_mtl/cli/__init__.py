"""The ``medusa`` command line (the top layer: it may import anything, nothing imports it).

Sub-commands live in their own modules; this file is only the table that maps a name to
``(module, add_arguments, run)``. Modules are imported lazily so ``medusa --help`` stays fast.

``fit``, ``validate`` and ``test`` are LightningCLI sub-commands (YAML configs via ``--config``); they are
handed over unchanged.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__

DESCRIPTION = ("Multi-task dense prediction: Medusa, its baselines (single-task, MT baseline, MTAN, PAD-Net, MTI-Net), "
               "the NYUD-v2 / PASCAL-Context protocols and universal feature learning.")

# name -> (module, add-arguments function, run function, help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "data synth": ("medusa_mtl.data.synthetic", "add_synth_arguments", "run_synth",
                   "write a synthetic NYUD_MT / PASCAL_MT dataset"),
    "data example": ("medusa_mtl.data.synthetic.example", "add_example_arguments", "run_example",
                     "write a plain folder of rendered rooms with floor / furniture labels (import example)"),
    "data show": ("medusa_mtl.data.show", "add_show_arguments", "run_show",
                  "write a contact sheet of images and labels"),
    "data check": ("medusa_mtl.data.check", "add_check_arguments", "run_check_cli",
                   "validate a dataset folder and list every problem"),
    "data import": ("medusa_mtl.data.importer", "add_import_arguments", "run_import",
                    "turn a folder of images and per-task label folders into a dataset (dataset.yaml)"),
    "data download": ("medusa_mtl.data.download", "add_download_arguments", "run_download",
                      "download the published NYUD_MT / PASCAL_MT archives (network)"),
    "resources": ("medusa_mtl.reports.resources", "add_resources_arguments", "run_resources",
                  "parameter and FLOP report for every model"),
    "evaluate": ("medusa_mtl.engine.evaluation", "add_evaluate_arguments", "run_evaluate",
                 "evaluate a checkpoint: per-task metrics JSON and delta-m"),
    "ufl": ("medusa_mtl.engine.ufl", "add_ufl_arguments", "run_ufl",
            "universal feature learning: freeze a trained backbone, train heads for new tasks"),
    "predict": ("medusa_mtl.reports.predict", "add_predict_arguments", "run_predict",
                "write prediction and attention PNGs for an image or a folder of images"),
    "pretrain": ("medusa_mtl.engine.pretrain", "add_pretrain_arguments", "run_pretrain",
                 "pretrain the shared backbone on rendered images (multi-label object presence); cached"),
    "benchmark": ("medusa_mtl.reports.benchmark", "add_benchmark_arguments", "run_benchmark",
                  "the main job: train and compare every model on the synthetic benchmark"),
    "export": ("medusa_mtl.engine.export", "add_export_arguments", "run_export",
               "write a checkpoint as ONNX or TorchScript (main tasks only), checked against PyTorch"),
    "convert": ("medusa_mtl.engine.convert", "add_convert_arguments", "run_convert",
                "load a checkpoint of the reference implementation (MT baseline, PAD-Net, MTI-Net) into this project"),
    "configs": ("medusa_mtl.cli.configs", "add_configs_arguments", "run_configs",
                "list the packaged YAML configs (--config medusa:<name>) and benchmark profiles, or print one"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test")
#: set to 1 (or pass ``--verbose`` anywhere on the command line) to see the libraries' warnings and notices
VERBOSE_ENV = "MEDUSA_VERBOSE"

# Messages the libraries print for developers, which a user of `medusa` cannot act on.
_QUIET_WARNINGS = (
    r".*LeafSpec.*",  # lightning's use of a deprecated torch.utils._pytree API
    r".*treespec.*",
    r".*exists and is not empty.*",  # the CSV logger reusing a run folder on resume (handled, see engine)
    r".*does not have many workers.*",  # num_workers is the user's choice, stated in the configs
    r".*smaller than the logging interval.*",
    r".*GPU available but not used.*",
    r".*module\(s\) in eval mode.*",
)
_QUIET_LOG_LINES = ("litlogger", "Tip: For seamless cloud logging")


def quiet_library_output() -> None:
    """Filter the libraries' developer warnings and tips (``--verbose`` / ``MEDUSA_VERBOSE=1`` keep them)."""
    import logging
    import warnings

    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for category in (DeprecationWarning, FutureWarning):
        for module in ("lightning", "torch", "timm", "jsonargparse", "torchmetrics"):
            warnings.filterwarnings("ignore", category=category, module=module)

    class _DropTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not any(text in record.getMessage() for text in _QUIET_LOG_LINES)

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())


def _split_verbose(argv: list[str]) -> tuple[list[str], bool]:
    verbose = "--verbose" in argv or os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0")
    return [a for a in argv if a != "--verbose"], verbose


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medusa", description=DESCRIPTION,
                                     epilog="`medusa COMMAND --help` for a command's options; README.md for a tour.")
    parser.add_argument("--version", action="version", version=f"medusa-mtl {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help=f"show the libraries' warnings and notices (also {VERBOSE_ENV}=1); anywhere on the line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (_, _, _, help_) in COMMANDS.items():
        parts = name.split()
        if len(parts) == 2:
            if parts[0] not in groups:
                g = sub.add_parser(parts[0], help=f"{parts[0]} commands")
                groups[parts[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            groups[parts[0]].add_parser(parts[1], help=help_, add_help=False)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (see `medusa {name} --help`)", add_help=False)
    return parser


def _load(name: str) -> tuple[object, object]:
    module_name, add_fn, run_fn, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    return getattr(module, add_fn), getattr(module, run_fn)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medusa`` script. Returns the process exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at interpreter exit
        return code
    except BrokenPipeError:
        # `medusa configs | head -1`: the reader has left. Python would print a traceback, and another one when it
        # flushes stdout at exit: point stdout at /dev/null and end as a shell reports a command stopped by SIGPIPE
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


def _main(argv: Sequence[str] | None) -> int:
    argv, verbose = _split_verbose(list(sys.argv[1:] if argv is None else argv))
    if not verbose:
        quiet_library_output()
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from .lightning import run_lightning_cli

        return run_lightning_cli(argv)
    # Two-word commands ("data synth") first, then one-word ones.
    name = None
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        name, rest = f"{argv[0]} {argv[1]}", argv[2:]
    elif argv and argv[0] in COMMANDS:
        name, rest = argv[0], argv[1:]
    if name is None:
        parser = _build_parser()
        if not argv or argv[0] in ("-h", "--help", "--version"):
            parser.parse_args(argv or ["--help"])
            return 0
        parser.parse_args(argv)  # prints the usage error for unknown commands
        return 2
    add_arguments, run = _load(name)
    parser = argparse.ArgumentParser(prog=f"medusa {name}", description=COMMANDS[name][3])
    add_arguments(parser)  # type: ignore[operator]
    args = parser.parse_args(rest)
    try:
        return int(run(args) or 0)  # type: ignore[operator]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Errors the library raises for bad input carry a message meant for the user: no traceback.
        from ..errors import is_user_error

        if not is_user_error(err):
            raise
        print(f"medusa {name}: error: {err}", file=sys.stderr)
        return 2

