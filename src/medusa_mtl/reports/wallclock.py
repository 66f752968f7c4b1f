"""The wall time of a benchmark that may be interrupted and resumed, and how fast the machine was.

``medusa benchmark`` resumes: a finished run in ``--out`` is reused, an unfinished one continues from its
``last.ckpt``. The wall time of the last invocation alone would then understate what the profile cost, so every
invocation into the same output folder is recorded in ``wall_clock.json`` there and the report states their sum.
A running invocation rewrites its entry every ``interval`` seconds, so one that is killed (power cut, SIGKILL,
the end of a session) still counts up to its last update.

A profile's wall time also depends on the machine, by a factor of two or more between "2-core" machines.
:func:`reference_step_time` times a fixed workload (training steps of the default single-task network, one
torch thread) so that two reports can say how their machines compared.

Example::

    ledger = WallLedger(out / "wall_clock.json", key={"profile": "standard"})
    ...                      # train
    ledger.close()
    ledger.total()           # seconds of every invocation with this key
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from pathlib import Path
from typing import Any

from ..provenance import write_json

__all__ = ["WallLedger", "recorded_invocations", "reference_step_time"]


class WallLedger:
    """Wall seconds of every invocation of one benchmark (same ``key``) into one output folder.

    A ledger whose stored key differs from ``key`` (another profile, another model subset) belongs to another
    benchmark: it is replaced, not added to. ``extra`` is stored with this invocation's entry (commit, the
    machine's reference step time)."""

    def __init__(self, path: str | Path, key: Any, interval: float = 30.0, extra: dict[str, Any] | None = None
                 ) -> None:
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=str))  # as it reads back from the file
        self.interval = float(interval)
        self.previous = recorded_invocations(self.path, self.key)
        self.t0 = time.time()
        self.entry: dict[str, Any] = {
            "started_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "wall_time_s": 0.0, "finished": False, **(extra or {})}
        self.closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._beat, name="wall-ledger", daemon=True)
        self._thread.start()

    def _elapsed(self) -> float:
        return self.entry["wall_time_s"] if self.closed else round(time.time() - self.t0, 1)

    def _write(self) -> None:
        with self._lock:
            self.entry["wall_time_s"] = self._elapsed()
            write_json(self.path, {"key": self.key, "invocations": [*self.previous, self.entry]})

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def invocations(self) -> list[dict[str, Any]]:
        """Every invocation so far, this one last (its time up to now)."""
        with self._lock:
            return [*self.previous, {**self.entry, "wall_time_s": self._elapsed()}]

    def total(self) -> float:
        """Wall seconds of all the invocations, this one up to now."""
        return round(sum(float(e.get("wall_time_s", 0.0)) for e in self.invocations()), 1)

    def close(self, finished: bool = True) -> None:
        """Stop the clock and record whether this invocation finished (``False``: it failed). A second call
        does nothing."""
        if self.closed:
            return
        self._stop.set()
        self._thread.join()
        self.entry["finished"] = finished
        self._write()
        self.closed = True


def recorded_invocations(path: str | Path, key: Any) -> list[dict[str, Any]]:
    """The invocations a ledger file holds for ``key`` (none if the file is absent, unreadable or another
    benchmark's)."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []  # none yet, or unreadable (a crash mid-write cannot leave one: writes are atomic)
    if not isinstance(stored, dict) or stored.get("key") != json.loads(json.dumps(key, default=str)):
        return []
    return [e for e in stored.get("invocations", []) if isinstance(e, dict)]


def reference_step_time(steps: int = 6, warmup: int = 2) -> float:
    """Seconds per training step of a fixed workload, on the CPU with one torch thread: the default single-task
    network (HRNet-W18-small-v2, depth head) on a batch of 8 random 64x64 images, Adam. Smaller is faster; the
    same machine gives the same value within a few per cent. Costs about ``(steps + warmup) x`` that value
    (~0.3 s a step on a slow 2-core machine)."""
    import torch

    from ..models.factory import create_model

    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = create_model("single_task", tasks="depth", dataset="nyud")
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(8, 3, 64, 64)

        def step() -> None:
            out = model(x)
            loss = sum(v.float().mean() for v in out.values()) if isinstance(out, dict) else out.float().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(warmup):
            step()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        return round((time.perf_counter() - t) / steps, 4)
    finally:
        torch.set_num_threads(threads)
        torch.random.set_rng_state(state)
