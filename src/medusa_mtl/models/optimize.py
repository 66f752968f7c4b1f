"""Opt-in speed switches for any model of the zoo: channels_last, bf16 autocast, ``torch.compile``.

None of them changes a parameter or a state-dict key; each is tested for equal outputs within tolerance
(``tests/test_performance_options.py``). They are generic (they apply to every architecture alike, so
comparisons stay fair) and independent of the model's own fused evaluation paths (``fused`` attributes, on
by default; :func:`set_fused` turns them off to get the literal reference computation).

Example:
    >>> import torch
    >>> from medusa_mtl.models import create_model
    >>> from medusa_mtl.models.optimize import autocast, optimize_for_inference, prepare_input
    >>> model = optimize_for_inference(create_model("medusa", tasks=["semseg", "depth"]), channels_last=True)
    >>> x = prepare_input(torch.randn(1, 3, 64, 64), channels_last=True)
    >>> with torch.inference_mode(), autocast("cpu", "fp32"):
    ...     out = model(x)
    >>> sorted(out)
    ['depth', 'semseg']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn as nn

#: ``--dtype`` names and the autocast dtype they stand for (``None``: no autocast, fp32 everywhere).
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def set_fused(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch the fused evaluation paths of every submodule that has one (a ``fused`` class attribute:
    ``HRHead``, ``MSAHead``, ``Medusa``) on or off; off gives the literal reference computation.

    Returns ``model`` (modified in place). Outputs agree either way up to float rounding.
    """
    for module in model.modules():
        if isinstance(getattr(type(module), "fused", None), bool):
            module.fused = bool(enabled)
    return model


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-d parameter and buffer channels_last (NHWC) -- in place, values unchanged.

    Convolutions then produce channels_last outputs, so the whole network runs in that layout (on CPU the
    oneDNN kernels for thin convolutions and bilinear upsampling are much faster in it; on GPU it enables
    Tensor-Core-friendly cuDNN kernels, mostly with bf16). Outputs keep their shapes; only strides differ.
    """
    return model.to(memory_format=torch.channels_last)


def prepare_input(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """The input batch in the layout matching :func:`to_channels_last` (a no-op when ``channels_last`` is off)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def autocast(device_type: str, dtype: str | torch.dtype | None = "fp32") -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``dtype`` (``"fp32"``/``None``: a null context; ``"bf16"``; ``"fp16"``, CUDA only).

    Autocast runs convolutions and matrix products in the low precision and keeps reductions (softmax, losses,
    BatchNorm statistics) in fp32; parameters stay fp32.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype]
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    if device_type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 autocast is for CUDA; use bf16 on the CPU")
    return torch.autocast(device_type=device_type, dtype=dtype)


def compile_model(model: nn.Module, **compile_kwargs: Any) -> Callable[..., Any]:
    """``torch.compile(model, **compile_kwargs)`` (default ``dynamic=False``: fixed input sizes).

    The compiled callable shares parameters with ``model``. The first call per input shape and mode compiles
    (tens of seconds to minutes); later calls are fast. A mode switch (``train()``/``eval()``) recompiles.
    """
    compile_kwargs.setdefault("dynamic", False)
    return torch.compile(model, **compile_kwargs)


def optimize_for_inference(model: nn.Module, channels_last: bool = False, compile: bool = False,
                           fused: bool = True, **compile_kwargs: Any) -> Any:
    """Put ``model`` in eval mode and apply the chosen switches (in place; returns the module, or the compiled
    callable when ``compile``).

    Args:
        model: any model of the zoo (or any ``nn.Module``).
        channels_last: NHWC parameters (:func:`to_channels_last`); feed inputs through :func:`prepare_input`.
        compile: wrap in :func:`compile_model`.
        fused: the models' own fused evaluation paths (:func:`set_fused`); ``False`` for the reference.
        **compile_kwargs: passed to ``torch.compile``.

    Precision is chosen at call time with :func:`autocast` (it is not a property of the module).
    """
    model.eval()
    set_fused(model, fused)
    if channels_last:
        to_channels_last(model)
    return compile_model(model, **compile_kwargs) if compile else model


@contextlib.contextmanager
def inference(device_type: str, dtype: str | torch.dtype | None = "fp32") -> Iterator[None]:
    """``torch.inference_mode()`` plus :func:`autocast` for ``dtype``."""
    with torch.inference_mode(), autocast(device_type, dtype):
        yield
