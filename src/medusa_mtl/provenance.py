"""What every results file records: versions, machine, time."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries that decide the numbers."""
    import lightning
    import numpy
    import scipy
    import timm
    import torch

    from . import __version__

    return {
        "medusa_mtl": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions, platform, CPU/GPU and a UTC timestamp, plus ``extra`` (profile, seed, ...)."""
    import torch

    info: dict[str, Any] = {
        "time_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    info.update(extra)
    return info


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (temp file + rename).

    Non-finite numbers are written as ``null``: JSON has no NaN or Infinity, and strict parsers (``jq``,
    JavaScript's ``JSON.parse``, Python's with ``parse_constant`` raising) reject the ``NaN`` token that
    ``json.dumps`` writes by default. NaN is what an undefined metric is (the IoU of a class absent from both
    the labels and the predictions), so ``null`` reads as "undefined"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(finite_or_null(obj), indent=2, sort_keys=False, default=_default,
                              allow_nan=False) + "\n")
    os.replace(tmp, path)


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite float (NumPy's included) replaced by ``None``; containers copied.

    >>> finite_or_null({"iou": [50.0, float("nan")], "rmse": float("inf")})
    {'iou': [50.0, None], 'rmse': None}
    """
    try:
        import numpy as np

        if isinstance(obj, np.ndarray):
            obj = obj.tolist()
        elif isinstance(obj, np.generic):
            obj = obj.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(v) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
