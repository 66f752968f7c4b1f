"""Where work runs on a CUDA machine, checked on the CPU: the device each path picks (from the trainer, or from
``torch.cuda.is_available``, monkeypatched where nothing is then moved to CUDA), and that the work goes there.

Lightning hands a module back on the CPU when ``fit`` ends; the benchmark's and ``medusa ufl``'s test scores
ran there, on a GPU machine too. Here a trainer that "trained on" the ``meta`` device stands in for a CUDA one:
the scored module must be on the trainer's device, wherever that is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from medusa_mtl.engine import training
from medusa_mtl.engine.training import default_device, make_trainer, trainer_device


def test_default_device_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == "cpu"


def test_trainer_device_is_the_strategy_root_device() -> None:
    assert trainer_device(make_trainer(logger=False, enable_checkpointing=False)) == torch.device("cpu")

    class Strategy:
        root_device = torch.device("cuda", 0)

    class Trainer:
        strategy = Strategy()

    assert trainer_device(Trainer()) == torch.device("cuda", 0)


def _scored_on(monkeypatch: pytest.MonkeyPatch, metrics: dict[str, dict[str, float]]) -> list[torch.device]:
    """Make every trainer report the ``meta`` device and record where ``evaluate_module`` finds the module."""
    from medusa_mtl.engine import evaluation

    seen: list[torch.device] = []

    def fake_evaluate(module: Any, loader: Any, progress: bool = False) -> dict[str, dict[str, float]]:
        seen.append(next(module.parameters()).device)
        return metrics

    monkeypatch.setattr(training, "trainer_device", lambda trainer: torch.device("meta"))
    monkeypatch.setattr(evaluation, "evaluate_module", fake_evaluate)
    return seen


def test_benchmark_run_is_tested_on_the_device_it_trained_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medusa_mtl.reports.benchmark import Run, dataset_root, ensure_dataset, execute_run

    spec = {"num_train": 6, "num_val": 2, "size": [64, 64], "scales": [1.0]}
    root = dataset_root(tmp_path / "data", "nyud", spec, 0)
    ensure_dataset(root, "nyud", spec, 0, lambda m: None)
    seen = _scored_on(monkeypatch, {"semseg": {"mIoU": 1.0}, "depth": {"rmse": 1.0}})
    profile = {"seed": 0, "data": {"nyud": spec}, "hrnet_form": "timm",
               "loader": {"batch_size": 2, "num_workers": 0, "val_fraction": 0.34},
               "mtl": {"epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}}
    record = execute_run(Run("nyud/mt_baseline/s0", "mtl", "mt_baseline", "MT baseline", "HRHead", "nyud",
                             ["semseg", "depth"], base="nyud/mt_baseline"),
                         profile, {"nyud": root}, tmp_path / "out", {}, lambda m: None, progress=False)
    assert seen == [torch.device("meta")]
    assert record["device"] == "meta" and record["test"]["semseg"]["mIoU"] == 1.0


def test_ufl_command_tests_on_the_device_it_trained_on(pascal_root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from medusa_mtl.cli import main as cli_main
    from medusa_mtl.engine.training import MultiTaskModule

    source = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud", backbone="test_efficientnet")
    ckpt = tmp_path / "src.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, ckpt)
    seen = _scored_on(monkeypatch, {"human_parts": {"mIoU": 1.0}, "sal": {"mIoU": 1.0}})
    assert cli_main(["ufl", "--source-ckpt", str(ckpt), "--tasks", "human_parts,sal", "--root", str(pascal_root),
                     "--size", "32x32", "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "ufl")]) == 0
    assert seen == [torch.device("meta")]


# -- medusa pretrain -------------------------------------------------------------------------------------------
def test_pretrain_device_auto_is_cuda_where_available(monkeypatch: pytest.MonkeyPatch) -> None:
    from medusa_mtl.engine.pretrain import resolve_device
    from medusa_mtl.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("gpu0")


def test_pretrain_trains_the_network_on_the_chosen_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``meta`` stands in for CUDA: the network and every batch it sees are on the chosen device."""
    from medusa_mtl.engine import pretrain as pretrain_mod

    seen: list[tuple[torch.device, torch.device]] = []

    class Stop(Exception):
        pass

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        seen.append((x.device, next(self.parameters()).device))
        raise Stop

    monkeypatch.setattr(pretrain_mod.PresenceNet, "forward", forward)
    settings = pretrain_mod.PretrainSettings(num_images=32, epochs=1, batch_size=16, size=(32, 32))
    with pytest.raises(Stop):
        pretrain_mod.pretrain(settings, tmp_path / "w.pth", log=lambda m: None, workers=1, device="meta")
    assert seen == [(torch.device("meta"), torch.device("meta"))]


def test_pretrain_command_records_the_device_and_keeps_the_cache_key(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from medusa_mtl.cli import main as cli_main
    from medusa_mtl.engine.pretrain import PretrainSettings, pretrain_record

    # the cache key (the file name of every cached backbone) is that of the versions without --device
    assert PretrainSettings().key() == "d801f6690c5f"
    args = ["pretrain", "--num-images", "32", "--epochs", "1", "--batch-size", "16", "--size", "32x32",
            "--cache-dir", str(tmp_path)]
    assert cli_main([*args, "--device", "cpu"]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert pretrain_record(path)["device"] == "cpu"
    assert PretrainSettings(num_images=32, epochs=1, batch_size=16, size=(32, 32)).key() in path.name
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_main([*args, "--device", "cuda", "--force"]) == 2  # one error line, before any rendering
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err
    assert path.is_file()  # refused before --force removed the cached file


def test_benchmark_plan_says_where_the_backbone_would_be_pretrained(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from medusa_mtl.reports import benchmark

    profile = benchmark.load_profile("quick")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lines = benchmark.plan_lines(profile, ["single_task"], tmp_path / "out", tmp_path / "cache", jobs=1)
    assert lines[1].endswith("absent: pretrained first (on the CPU)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # nothing is moved: --plan trains nothing
    lines = benchmark.plan_lines(profile, ["single_task"], tmp_path / "out", tmp_path / "cache", jobs=1)
    assert lines[1].endswith("absent: pretrained first (on cuda)")


# -- the benchmark's settings fingerprint on a GPU machine ----------------------------------------------------
def test_cuda_fingerprints_leave_out_the_cpu_threads_and_name_the_device(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU the torch threads change the numbers, so they are in a run's fingerprint (as before); on CUDA
    they do not, the device does: a GPU run resumes in a later session whatever its cores or --jobs, and a CPU run
    is not taken for a GPU one."""
    from medusa_mtl.reports import benchmark

    profile = benchmark.load_profile("quick")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)  # a 16-core machine: 16 threads with --jobs 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = {jobs: benchmark.plan_fingerprints(profile, None, tmp_path, jobs) for jobs in (1, 2)}
    assert all(cpu[1][k] != cpu[2][k] for k in cpu[1])  # 16 threads vs 1 thread per job
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # nothing is moved: no run trains here
    gpu = {jobs: benchmark.plan_fingerprints(profile, None, tmp_path, jobs) for jobs in (1, 2)}
    assert gpu[1] == gpu[2]
    assert not set(gpu[1].values()) & (set(cpu[1].values()) | set(cpu[2].values()))
    # the CPU rule is unchanged: threads in, no device
    run = benchmark.plan_runs(["single_task"], profile)[0]
    assert benchmark._fingerprint(run, profile, None, None, 16, "cpu") == benchmark._fingerprint(run, profile, None,
                                                                                                   None, 16)
    lines = benchmark.plan_lines(profile, ["single_task"], tmp_path / "out", tmp_path, jobs=2)
    assert lines[0].endswith("2 job(s) at a time, training on cuda")


def test_a_finished_cuda_run_is_reused_with_the_plans_fingerprint(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """execute_run computes the fingerprint --plan shows on a CUDA machine (another one would train the run:
    here it would fail, no dataset is given)."""
    from medusa_mtl.reports import benchmark

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)  # the run's threads; the plan's: 1 per job of 3
    profile = benchmark.load_profile("quick")
    fingerprints = benchmark.plan_fingerprints(profile, ["single_task"], tmp_path / "cache", jobs=3)
    run = benchmark.plan_runs(["single_task"], profile)[0]
    record = {"key": run.key, "fingerprint": fingerprints[run.key], "test": {}}
    path = tmp_path / "out" / "runs" / run.key / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    pre = str(benchmark._pretrain_file(profile, tmp_path / "cache"))
    assert benchmark.execute_run(run, profile, {}, tmp_path / "out", {}, lambda m: None, progress=False,
                                 pretrained_file=pre) == record
