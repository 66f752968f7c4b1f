"""The benchmark's wall-time ledger: a resumed benchmark reports the time of all its invocations."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from medusa_mtl.reports.wallclock import WallLedger, reference_step_time


def test_invocations_add_up_and_a_killed_one_counts_to_its_last_update(tmp_path: Path) -> None:
    path = tmp_path / "wall_clock.json"
    first = WallLedger(path, key={"profile": "p"}, interval=0.05, extra={"commit": "abc"})
    time.sleep(0.4)
    first._stop.set()  # killed: no close(), the file keeps its last periodic update
    first._thread.join()
    kept = json.loads(path.read_text())["invocations"]
    assert len(kept) == 1 and kept[0]["finished"] is False and kept[0]["commit"] == "abc"
    assert kept[0]["wall_time_s"] >= 0.2
    second = WallLedger(path, key={"profile": "p"}, interval=60)
    time.sleep(0.2)
    second.close()
    entries = second.invocations()
    assert [e["finished"] for e in entries] == [False, True]
    assert second.total() == pytest.approx(kept[0]["wall_time_s"] + entries[1]["wall_time_s"], abs=0.11)
    assert second.total() >= 0.4 and json.loads(path.read_text())["invocations"] == entries
    frozen = second.total()
    time.sleep(0.15)
    assert second.total() == frozen  # closed: the clock stopped
    second.close(finished=False)  # a second close changes nothing
    assert second.invocations()[-1]["finished"] is True


def test_another_benchmark_in_the_same_folder_starts_a_new_ledger(tmp_path: Path) -> None:
    path = tmp_path / "wall_clock.json"
    a = WallLedger(path, key={"profile": {"mtl": {"epochs": 1}}, "models": None})
    a.close()
    b = WallLedger(path, key={"profile": {"mtl": {"epochs": 2}}, "models": None})
    b.close(finished=False)
    assert len(b.invocations()) == 1 and b.invocations()[0]["finished"] is False
    path.write_text("{not json")  # unreadable: a fresh ledger, not a crash
    c = WallLedger(path, key={"profile": "x"})
    c.close()
    assert len(json.loads(path.read_text())["invocations"]) == 1


def test_reference_step_time_leaves_threads_and_rng_as_they_were() -> None:
    import torch

    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    t = reference_step_time(steps=1, warmup=0)
    assert 0 < t < 60 and torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)
