"""Errors meant for the user: a message naming the file or option and what was expected."""

from __future__ import annotations


class MedusaError(Exception):
    """Base of the errors whose message is written for the user (shown without a traceback by the CLI)."""


class ConfigError(MedusaError, ValueError):
    """A bad option or configuration value."""


class NonFiniteLossError(MedusaError, RuntimeError):
    """A loss became NaN or infinite; training stops and the last good checkpoint is kept."""


class CheckpointError(MedusaError, RuntimeError):
    """A checkpoint file is missing, truncated or not a medusa-mtl checkpoint."""


class DownloadError(MedusaError, RuntimeError):
    """A download the user asked for (``medusa data download``, timm's ``pretrained=True`` weights) failed
    (network, HTTP error, checksum mismatch) or its archive is unusable; the message says how to place the file
    by hand."""


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` carries a message for the user (so the CLI prints it without a traceback).

    Our own errors always do; plain ``ValueError``/``FileNotFoundError`` raised by our validation code do too
    (their message names the file or option). Anything else is a bug and keeps its traceback.
    """
    if isinstance(err, MedusaError):
        return True
    if isinstance(err, FileNotFoundError):
        return True
    mod = type(err).__module__ or ""
    if isinstance(err, ValueError) and mod.startswith("medusa_mtl"):
        # our own ValueError subclasses (e.g. DataFormatError) are always raised by our validation code, even
        # when a DataLoader worker re-raises them from torch's code
        return True
    if isinstance(err, ValueError) and mod == "builtins":
        origin = raised_in(err)
        return origin is not None and origin[0].startswith("medusa_mtl")
    return False


def raised_in(err: BaseException) -> tuple[str, str] | None:
    """``(module, function)`` of the frame that raised ``err`` (the innermost of its traceback); None without one."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    return str(tb.tb_frame.f_globals.get("__name__", "")), tb.tb_frame.f_code.co_name
