"""The UFL feature cache (models/feature_cache.py) gives the uncached run bit for bit: per-image features keyed by
the input's bytes and the batch's shape, a batch served only when every image hits, a check before the first
cached value is used, and a switch that changes no result and no benchmark fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medusa_mtl.cli import main as cli_main
from medusa_mtl.data.synthetic import generate
from medusa_mtl.engine.checkpoints import load_checkpoint
from medusa_mtl.engine.training import MultiTaskModule
from medusa_mtl.errors import ConfigError
from medusa_mtl.models import create_model
from medusa_mtl.models.feature_cache import FeatureCache, feature_cache_of, set_feature_cache


def _frozen(arch: str = "mt_baseline") -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, tasks=["human_parts", "sal"], dataset="pascal")
    model.freeze_backbone()
    return model.train()  # the decoder trains; the frozen backbone stays in eval mode


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


def test_served_features_are_the_computed_ones_bit_for_bit() -> None:
    model = _frozen()
    bb = model.backbone
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        plain = bb(x)
        perm = torch.tensor([2, 0, 3, 1])
        plain_perm = bb(x[perm])
        cache = set_feature_cache(model, True)
        assert feature_cache_of(model) is cache
        first = bb(x)  # computed and stored
        again = bb(x)  # served (and checked: the first served batch)
        shuffled = bb(x[perm])  # the same images in another order: served
    assert _equal(first, plain) and _equal(again, plain) and _equal(shuffled, plain_perm)
    assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 2 and cache.stats()["verified"] == 1
    assert cache.stats()["images"] == 4 and cache.stats()["disabled"] is None
    # one image not seen yet: the whole batch goes through the backbone, as without the cache
    y = torch.cat([x[:3], torch.randn(1, 3, 64, 64)])
    with torch.no_grad():
        mixed = bb(y)
        set_feature_cache(model, False)
        assert feature_cache_of(model) is None
        assert _equal(mixed, bb(y))
    assert cache.stats()["misses"] == 2 and cache.stats()["images"] == 5


def test_mirror_computes_the_flipped_batch_ahead() -> None:
    model = _frozen()
    cache = set_feature_cache(model, True, mirror=True)
    x = torch.randn(4, 3, 64, 64)
    x[1:3] = x[1:3].flip(-1)  # some images come flipped, some not, as from a flips-only augmentation
    y = x.flip(-1)  # every image with the other flip: the next epoch's inputs
    with torch.no_grad():
        model.backbone(x)
        served = model.backbone(y)
        set_feature_cache(model, False)
        assert _equal(served, model.backbone(y))
    assert cache.stats()["misses"] == 1 and cache.stats()["mirrored"] == 1 and cache.stats()["hits"] == 1


def test_batch_size_is_part_of_the_key() -> None:
    # oneDNN picks its kernels by batch size: an image's features in a batch of 1 may differ from those in a batch
    # of 4, so a cached entry serves batches of its own size only
    model = _frozen()
    cache = set_feature_cache(model, True)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        model.backbone(x)
        single = model.backbone(x[:1])
        set_feature_cache(model, False)
        assert _equal(single, model.backbone(x[:1]))
    assert cache.stats()["misses"] == 2 and cache.stats()["hits"] == 0


def test_a_ufl_training_step_with_the_cache_equals_one_without() -> None:
    x = torch.randn(4, 3, 64, 64)

    def train(cached: bool) -> dict[str, torch.Tensor]:
        model = _frozen("medusa")
        if cached:
            set_feature_cache(model, True)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(3):
            out = model(x)
            loss = sum(v.float().mean() for k, v in out.items() if k in ("human_parts", "sal"))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if cached:
            assert feature_cache_of(model).stats()["hits"] == 2
        return model.state_dict()

    a, b = train(False), train(True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_mismatch_found_before_any_use_switches_the_cache_off() -> None:
    calls = []

    def compute(x: torch.Tensor) -> list[torch.Tensor]:  # a backbone whose outputs drift between calls
        calls.append(1)
        return [x * (1.0 + 1e-3 * len(calls))]

    cache = FeatureCache()
    module = torch.nn.Linear(1, 1)
    x = torch.randn(2, 3, 8, 8)
    first = cache(compute, x, module)
    with pytest.warns(RuntimeWarning, match="before any cached value was used"):
        second = cache(compute, x, module)
    assert torch.equal(second[0], x * 1.002) and not torch.equal(first[0], second[0])  # computed, not served
    assert cache.stats()["disabled"] and cache.stats()["hits"] == 0 and cache.stats()["images"] == 0
    cache(compute, x, module)
    assert len(calls) == 3  # off: every call computes


def test_new_weights_clear_the_cache_and_the_memory_bound_holds() -> None:
    model = _frozen()
    cache = set_feature_cache(model, True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model.backbone(x)
        for p in model.backbone.parameters():
            p.mul_(0.5)
        halved = model.backbone(x)  # stale entries dropped: computed with the new weights
        set_feature_cache(model, False)
        assert _equal(halved, model.backbone(x))
    assert cache.stats()["misses"] == 2 and cache.stats()["hits"] == 0
    small = set_feature_cache(model, True, max_bytes=1)
    with torch.no_grad():
        model.backbone(x)
        model.backbone(x)
    assert small.stats()["images"] == 0 and small.stats()["hits"] == 0


def test_refused_on_a_backbone_that_learns() -> None:
    model = create_model("mt_baseline", tasks=["semseg"], dataset="nyud")
    with pytest.raises(ConfigError, match="frozen backbone"):
        set_feature_cache(model, True)


@pytest.fixture(scope="module")
def ufl_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fc")
    generate("pascal", tmp / "PASCAL_MT", num_train=8, num_val=2, size=(64, 64), seed=2, workers=1)
    torch.manual_seed(0)
    source = MultiTaskModule(arch="mt_baseline", tasks="semseg,depth", dataset="nyud")
    ckpt = tmp / "source.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, ckpt)
    config = tmp / "flips.yaml"  # flips only: every input recurs, so later epochs are served from the cache
    config.write_text("data: {scales: [1.0], rotation: 0, num_workers: 0, val_fraction: 0.25}\n"
                      "trainer: {enable_progress_bar: false, enable_model_summary: false}\n")
    protocol = tmp / "protocol.yaml"  # PASCAL's own augmentation: random zooms and rotations
    protocol.write_text("data: {num_workers: 0, val_fraction: 0.25}\n"
                        "trainer: {enable_progress_bar: false, enable_model_summary: false}\n")
    return {"root": tmp / "PASCAL_MT", "ckpt": ckpt, "config": config, "protocol": protocol}


def test_medusa_ufl_with_the_feature_cache_is_the_run_without(ufl_inputs: dict[str, Path], tmp_path: Path) -> None:
    def run(out: Path, *extra: str) -> dict:
        args = ["ufl", "--source-ckpt", str(ufl_inputs["ckpt"]), "--tasks", "human_parts,sal", "--root",
                str(ufl_inputs["root"]), "--config", str(ufl_inputs["config"]), "--size", "64x64", "--epochs", "4",
                "--batch-size", "2", "--lr", "1e-2", "--seed", "3", "--out", str(out), *extra]
        assert cli_main(args) == 0
        return json.loads((out / "ufl_metrics.json").read_text())

    plain = run(tmp_path / "plain")
    cached = run(tmp_path / "cached", "--feature-cache")
    assert plain["feature_cache"] is None
    stats = cached["feature_cache"]
    # flips only: the first epoch stores both inputs of each image it sees (mirror), the later ones are served
    assert stats["mirrored"] > 0 and stats["hits"] > stats["misses"] and stats["verified"] >= 1
    assert stats["disabled"] is None
    assert cached["metrics"] == plain["metrics"]
    a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.ckpt")["state_dict"]
    b = load_checkpoint(tmp_path / "cached" / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_medusa_ufl_feature_cache_stays_off_when_inputs_do_not_recur(ufl_inputs: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ufl", "--source-ckpt", str(ufl_inputs["ckpt"]), "--tasks", "sal", "--root", str(ufl_inputs["root"]),
            "--config", str(ufl_inputs["protocol"]), "--size", "64x64", "--epochs", "1", "--batch-size", "4",
            "--feature-cache",
            "--out", str(tmp_path / "ufl")]
    assert cli_main(args) == 0
    assert "--feature-cache is off: the train augmentation zooms or rotates" in capsys.readouterr().err
    assert json.loads((tmp_path / "ufl" / "ufl_metrics.json").read_text())["feature_cache"] is None


def test_the_profile_switch_changes_no_fingerprint_and_is_checked() -> None:
    from medusa_mtl.reports.benchmark import _check_profile_values, _fingerprint, load_profile, plan_runs

    profile = load_profile("standard")
    run = next(r for r in plan_runs(None, profile) if r.group == "ufl")
    on = {**profile, "ufl": {**profile["ufl"], "feature_cache": True}}
    off = {**profile, "ufl": {k: v for k, v in profile["ufl"].items() if k != "feature_cache"}}
    assert _fingerprint(run, on, None, "abc", 1) == _fingerprint(run, off, None, "abc", 1)
    with pytest.raises(ConfigError, match="ufl.feature_cache must be true or false"):
        _check_profile_values("x", {**profile, "ufl": {**profile["ufl"], "feature_cache": "yes"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['feature_cache'\] in mtl"):
        _check_profile_values("x", {**profile, "mtl": {**profile["mtl"], "feature_cache": True}})
