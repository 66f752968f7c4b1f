"""The main job: ``medusa benchmark --profile quick|standard|full --out results/``.

1. Generates the synthetic NYUD and PASCAL datasets if they are absent (SYNTHETIC.md).
2. Trains ST, MT baseline, MTAN, PAD-Net, MTI-Net and Medusa (MTAN/PAD-Net/MTI-Net/Medusa with and without
   normals + edge auxiliaries) on synthetic NYUD; model selection on a held-out part of train, the reported
   numbers on the test split.
3. Trains PASCAL single-task references and runs UFL (human_parts, sal) from each method's frozen NYUD backbone.
4. Writes ``REPORT.md`` (MTL table, UFL table, resource table and plot, example predictions) and
   ``results.json`` with every number, the profile, seed, versions and wall times.

Every number is measured by this run; nothing is copied or hard-coded. A run whose ``result.json`` exists for
the same settings is reused, so an interrupted benchmark resumes where it stopped (a half-trained run resumes
from its ``last.ckpt``). ``--report-only`` rewrites ``REPORT.md`` from an existing ``results.json``
(:func:`rerender_report`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..options import output_dir, parse_yaml, positive_int
from ..provenance import provenance, write_json
from ..tasks import delta_m
from .wallclock import WallLedger, recorded_invocations, reference_step_time

NYUD_MAIN = ["semseg", "depth"]
NYUD_NE = ["semseg", "depth", "normals", "edge"]
UFL_TASKS = ["human_parts", "sal"]

# (registry name, display name, head, has an N+E variant, has a UFL row)
METHODS: list[tuple[str, str, str, bool]] = [
    ("single_task", "ST baseline", "HRHead", False),
    ("mt_baseline", "MT baseline", "HRHead", False),
    ("mtan", "MTAN", "DeepLab-v3+", True),
    ("padnet", "PAD-Net", "HRHead", True),
    ("mtinet", "MTI-Net", "HRHead", True),
    ("medusa", "Medusa", "MSA", True),
]


# Every key a profile may set, and where it is read (a key outside these sets is refused: nothing would read it).
PROFILE_KEYS = {"profile", "seed", "seeds", "data", "loader", "pretrain", "pretrain_prefer", "mtl", "st_pascal", "ufl",
                "predict_images", "one_seed", "skip", "scratch_check", "hrnet_form", "bn_momentum",
                "test_flip", "validate", "channels_last"}
VALIDATE = ("every_epoch", "last_epoch")  # a profile's `validate`: when the held-out split is scored
DATA_KEYS = {"num_train", "num_val", "size", "scales", "rotation"}  # dataset_root, ensure_dataset, MultiTaskDataModule
LOADER_KEYS = {"batch_size", "eval_batch_size", "num_workers", "val_fraction", "cache"}  # MultiTaskDataModule
# epochs: the trainer; batch_size (optional): the group's training batch instead of loader.batch_size; the rest:
# MultiTaskModule's optimiser arguments (execute_run passes them on)
OPTIM_KEYS = {"epochs", "optimizer", "lr", "weight_decay", "momentum", "poly_power", "backbone_lr_scale",
              "warmup_epochs", "batch_size"}
# ufl only: cache the frozen backbone's features per input image (models/feature_cache.py; same results, less time);
# no backbone_lr_scale there: the backbone is frozen, so the key would be read by nothing
UFL_KEYS = (OPTIM_KEYS - {"backbone_lr_scale"}) | {"feature_cache"}


@dataclass
class Run:
    """One training run of the benchmark (one seed of one row)."""

    key: str  # "<base>/s<seed>": also the run's folder under runs/
    group: str  # "mtl", "st_pascal" or "ufl"
    model: str
    label: str
    head: str
    dataset: str
    tasks: list[str]
    aux_tasks: list[str] | None = None
    ne: bool = False
    source: str | None = None  # UFL: key of the NYUD run (same seed) whose backbone is frozen
    seed: int = 0
    base: str = ""  # the table row: "nyud/medusa_ne", "ufl/medusa", "pascal/single_task", ...
    pretrained: bool = True  # start from the profile's pretrained backbone (when the profile has one)
    scratch_check: bool = False  # the from-scratch twin of a row, for the pretraining comparison
    extra: dict[str, Any] = field(default_factory=dict)


def load_profile(name: str) -> dict[str, Any]:
    """A benchmark profile by name (``quick``, ``standard``, ``full``) or path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"--profile: file not found: {path}")
        text = path.read_text()
    else:
        res = importlib_resources.files("medusa_mtl") / "configs" / "benchmark" / f"{name}.yaml"
        if not res.is_file():
            known = sorted(p.name[:-5] for p in (importlib_resources.files("medusa_mtl") / "configs" /
                                                 "benchmark").iterdir() if p.name.endswith(".yaml"))
            raise ConfigError(f"unknown --profile {name!r}; known profiles: {known} (or a YAML path)")
        text = res.read_text()
    profile = parse_yaml(text, f"--profile {name}")
    if not isinstance(profile, dict):
        raise ConfigError(f"--profile {name}: expected a mapping of settings (see `medusa configs "
                          f"benchmark/quick.yaml`), got {type(profile).__name__}")
    for key in ("profile", "seed", "data", "loader", "mtl", "st_pascal", "ufl"):
        if key not in profile:
            raise ConfigError(f"profile {name!r} lacks the key {key!r}")
    _check_profile_values(name, profile)
    seeds = profile.setdefault("seeds", [profile["seed"]])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"profile {name!r}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):  # a repeated seed reruns nothing: one run counted as several
        raise ConfigError(f"profile {name!r}: 'seeds' repeats a seed ({seeds}); give distinct training seeds")
    for key in ("one_seed", "skip", "scratch_check"):
        value = profile.setdefault(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"profile {name!r}: {key!r} must be a list of row names, got {value!r}")
    return profile


def _check_profile_values(name: str, profile: dict[str, Any]) -> None:
    """Every value the runs read, with its type and range, checked before any work (a typo in a profile was a
    KeyError / TypeError traceback, sometimes after pretraining and data generation)."""

    def fail(key: str, expected: str, value: Any) -> None:
        raise ConfigError(f"profile {name!r}: {key} must be {expected}, got {value!r}")

    def section(key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            fail(key, "a mapping", value)
        return value

    def count(key: str, value: Any, least: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            fail(key, f"an integer >= {least}", value)

    def number(key: str, value: Any, low: float = 0.0, low_open: bool = True) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (value > low if low_open
                                                                                 else value >= low)
        if not ok:
            fail(key, f"a number {'>' if low_open else '>='} {low:g}", value)

    def known_keys(where: str, mapping: dict[str, Any], allowed: set[str]) -> None:
        # a misspelt key (bn_momentun, loader.chache, data.nyud.scale) was read by nothing: the run went on with
        # the default, and the report described settings that were never used
        unknown = sorted(set(mapping) - allowed)
        if unknown:
            raise ConfigError(f"profile {name!r}: unknown key(s) {unknown} in {where}; known: {sorted(allowed)}")

    known_keys("the profile", profile, PROFILE_KEYS)
    count("seed", profile["seed"], 0)
    data = section("data", profile["data"])
    known_keys("data", data, {"nyud", "pascal"})
    for dataset in ("nyud", "pascal"):
        spec = section(f"data.{dataset}", data.get(dataset))
        known_keys(f"data.{dataset}", spec, DATA_KEYS)
        for key in ("num_train", "num_val"):
            count(f"data.{dataset}.{key}", spec.get(key))
        size = spec.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                    and v > 0 and v % 32 == 0 for v in size)):
            fail(f"data.{dataset}.size", "[height, width], positive multiples of 32", size)
        if "scales" in spec and not (isinstance(spec["scales"], list) and spec["scales"] and all(
                isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in spec["scales"])):
            fail(f"data.{dataset}.scales", "a non-empty list of positive numbers", spec["scales"])
        if "rotation" in spec and (isinstance(spec["rotation"], bool) or not isinstance(spec["rotation"], int | float)
                                   or not 0 <= spec["rotation"] <= 180):
            fail(f"data.{dataset}.rotation", "a number of degrees in [0, 180]", spec["rotation"])
    for key in ("test_flip", "channels_last"):
        if key in profile and not isinstance(profile[key], bool):
            fail(key, "true or false", profile[key])
    if "validate" in profile and profile["validate"] not in VALIDATE:
        fail("validate", " or ".join(VALIDATE), profile["validate"])
    loader = section("loader", profile["loader"])
    known_keys("loader", loader, LOADER_KEYS)
    count("loader.batch_size", loader.get("batch_size"))
    count("loader.num_workers", loader.get("num_workers"), 0)
    if "eval_batch_size" in loader:
        count("loader.eval_batch_size", loader["eval_batch_size"])
    fraction = loader.get("val_fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        fail("loader.val_fraction", "a number strictly between 0 and 1", fraction)
    for group in ("mtl", "st_pascal", "ufl"):
        cfg = section(group, profile[group])
        known_keys(group, cfg, UFL_KEYS if group == "ufl" else OPTIM_KEYS)
        if not isinstance(cfg.get("feature_cache", False), bool):
            fail(f"{group}.feature_cache", "true or false", cfg["feature_cache"])
        count(f"{group}.epochs", cfg.get("epochs"))
        if "batch_size" in cfg:
            count(f"{group}.batch_size", cfg["batch_size"])
        if cfg.get("optimizer") not in ("adam", "sgd"):
            fail(f"{group}.optimizer", "'adam' or 'sgd'", cfg.get("optimizer"))
        number(f"{group}.lr", cfg.get("lr"))
        number(f"{group}.weight_decay", cfg.get("weight_decay", 0.0), low_open=False)
        if "backbone_lr_scale" in cfg:
            number(f"{group}.backbone_lr_scale", cfg["backbone_lr_scale"])
        if "warmup_epochs" in cfg:
            number(f"{group}.warmup_epochs", cfg["warmup_epochs"], low_open=False)
    known = {run.base for run in plan_runs(None, {"seed": 0})}  # every row of the benchmark
    for key in ("one_seed", "skip", "scratch_check"):
        unknown = sorted(set(profile.get(key) or []) - known)
        if unknown:
            fail(key, f"a list of row names ({', '.join(sorted(known))})", unknown)


def plan_runs(methods: list[str] | None = None, profile: dict[str, Any] | None = None) -> list[Run]:
    """Every run of the benchmark, in an order where UFL sources come first.

    ``profile`` decides the seeds (``seeds``), the rows run with the first seed only (``one_seed``), rows
    left out (``skip``) and rows also trained from scratch with the first seed (``scratch_check``); its
    ``hrnet_form`` (``reference``, the default, or ``timm``; see :mod:`medusa_mtl.models.backbone`) applies to
    every model and to the pretraining; ``bn_momentum`` (optional) sets the backbone's BatchNorm momentum while
    fine-tuning (not in pretraining); ``test_flip: true`` scores every run (held-out selection and test) on the
    mean of the outputs for each image and its mirror image (:mod:`medusa_mtl.engine.tta`); ``validate:
    last_epoch`` scores the held-out split after the last epoch only (``every_epoch``, the default: after each,
    and the lowest held-out loss is selected); ``channels_last: true`` trains and scores every network in the NHWC
    memory format (``MultiTaskModule(channels_last=...)``: faster on the CPU, equal up to float rounding). A
    dataset's ``data`` entry may set ``scales``, the random scales of its train augmentation, and ``rotation``, its
    largest random rotation in degrees (each instead of SPEC §6's protocol; see ``MultiTaskDataModule``);
    ``loader: {cache: true}`` keeps decoded samples in memory (same results, faster epochs).
    """
    profile = profile or {}
    seeds = list(profile.get("seeds") or [profile.get("seed", 0)])
    one_seed = set(profile.get("one_seed") or [])
    skip = set(profile.get("skip") or [])
    scratch = set(profile.get("scratch_check") or [])
    rows: list[Run] = []  # one template per row (seed filled in below)
    chosen = [m for m in METHODS if methods is None or m[0] in methods]
    for name, label, head, ne in chosen:
        rows.append(Run("", "mtl", name, label, head, "nyud", list(NYUD_MAIN), base=f"nyud/{name}"))
        if ne:
            rows.append(Run("", "mtl", name, label, head, "nyud", list(NYUD_MAIN), aux_tasks=list(NYUD_NE), ne=True,
                            base=f"nyud/{name}_ne"))
    rows.append(Run("", "st_pascal", "single_task", "ST baseline", "HRHead", "pascal", list(UFL_TASKS),
                    base="pascal/single_task"))
    for name, label, head, ne in chosen:
        if name == "single_task":
            continue
        source = f"nyud/{name}_ne" if ne else f"nyud/{name}"
        rows.append(Run("", "ufl", name, label, head, "pascal", list(UFL_TASKS), source=source, base=f"ufl/{name}"))
    runs: list[Run] = []
    kept = {r.base for r in rows if r.base not in skip}
    for row in rows:
        if row.base not in kept or (row.source and row.source not in kept):
            continue
        single = row.base in one_seed or (row.source is not None and row.source in one_seed)
        for seed in seeds[:1] if single else seeds:
            source = f"{row.source}/s{seed}" if row.source else None
            runs.append(replace(row, key=f"{row.base}/s{seed}", seed=seed, source=source,
                                extra={"one_seed": single}))
        if row.base in scratch and row.group == "mtl":
            base = f"{row.base}_scratch"
            runs.append(replace(row, key=f"{base}/s{seeds[0]}", base=base, seed=seeds[0], pretrained=False,
                                scratch_check=True, extra={"one_seed": True}))
    return runs


def _size_text(size: list[int]) -> str:
    return f"{size[0]}x{size[1]}"


def _backbone_lr_text(optim: dict[str, Any]) -> str:
    """`` (backbone lr x0.1, ...)`` when a group trains its backbones slower than its heads (else nothing)."""
    scale = optim.get("backbone_lr_scale", 1.0)
    if scale == 1.0:
        return ""
    return (f" (backbones at {scale:g}x that lr: {optim['lr'] * scale:g}; the profile's backbone_lr_scale, "
            "instead of SPEC's one lr)")


def _warmup_text(optim: dict[str, Any]) -> str:
    """`` (linear warm-up over ...)`` when a group warms its learning rate up (else nothing)."""
    epochs = optim.get("warmup_epochs", 0)
    if not epochs:
        return ""
    return f" (linear warm-up over the first {epochs:g} epoch{'' if epochs == 1 else 's'}, not in SPEC)"


def _schedule_notes(optim: dict[str, Any]) -> str:
    """What a training group's optimiser does beyond SPEC's one lr and poly schedule (nothing when it does not)."""
    return _backbone_lr_text(optim) + _warmup_text(optim)


def train_batch_size(profile: dict[str, Any], group: str) -> int:
    """The training batch of a group's runs (``mtl``, ``st_pascal``, ``ufl``): its own ``batch_size`` where the
    profile sets one, else ``loader.batch_size``."""
    return int(profile[group].get("batch_size", profile["loader"]["batch_size"]))


def _batch_text(profile: dict[str, Any]) -> str:
    sizes = {group: train_batch_size(profile, group) for group in ("mtl", "st_pascal", "ufl")}
    if len(set(sizes.values())) == 1:
        return f"Batch {sizes['mtl']}. "
    names = {"mtl": "MTL", "st_pascal": "PASCAL ST", "ufl": "UFL"}
    return "Training batch " + ", ".join(f"{names[g]} {b}" for g, b in sizes.items()) + ". "


def _rotation_text(degrees: float) -> str:
    return "none" if degrees == 0 else f"up to ±{degrees:g}°"


def dataset_root(data_dir: Path, dataset: str, spec: dict[str, Any], seed: int) -> Path:
    """Folder of a synthetic dataset for these settings (so profiles never overwrite each other)."""
    folder = f"{dataset}_{_size_text(spec['size'])}_n{spec['num_train']}-{spec['num_val']}_s{seed}"
    return data_dir / folder / ("NYUD_MT" if dataset == "nyud" else "PASCAL_MT")


def ensure_dataset(root: Path, dataset: str, spec: dict[str, Any], seed: int, log: Any) -> None:
    """Generate the synthetic dataset at ``root`` unless a complete one is there."""
    from ..data.formats import read_split

    try:
        n_train = len(read_split(root, dataset, "train"))
        n_val = len(read_split(root, dataset, "val"))
        if n_train == spec["num_train"] and n_val == spec["num_val"]:
            log(f"using synthetic {dataset} at {root} ({n_train} train / {n_val} test)")
            return
    except (FileNotFoundError, ValueError):
        pass
    from ..data.synthetic import generate

    if root.exists():
        shutil.rmtree(root)
    log(f"generating synthetic {dataset}: {spec['num_train']} train / {spec['num_val']} test at "
        f"{_size_text(spec['size'])} into {root}")
    t0 = time.time()
    generate(dataset, root, num_train=spec["num_train"], num_val=spec["num_val"], size=tuple(spec["size"]),
             seed=seed)
    log(f"  done in {time.time() - t0:.1f} s")


def _fingerprint(run: Run, profile: dict[str, Any], pretrained_file: str | None,
                 source_fingerprint: str | None = None, threads: int | None = None,
                 device: str | None = None) -> str:
    """The settings a run's result depends on. A UFL run's include its source run's (a retrained backbone makes
    its heads stale); ``threads``, the torch threads it trains with on the CPU, changes float rounding and, over
    a schedule, the numbers. ``device``: the device it trains on (``cpu``, the default, or ``cuda``). On CUDA the
    arithmetic is the GPU's, so the CPU thread count (set by ``--jobs`` and the machine's cores) is left out and
    the device goes in: a run made on the CPU is retrained on a GPU machine (and the other way round), and a GPU
    run interrupted in one session resumes in the next whatever its core count or ``--jobs``. The GPU model is
    not in it: CUDA training here is not bitwise reproducible anyway (cuDNN, atomics; ``deterministic=False``).
    A CPU run's fingerprint is that of versions without ``device``."""
    group = run.group
    # the loader's ``cache`` changes speed, not batches: runs with and without it are the same run
    loader = {k: v for k, v in profile["loader"].items() if k != "cache"}
    # likewise the UFL feature cache: exact (it checks itself), so runs with and without it are the same run
    optim = {k: v for k, v in profile[group].items() if k != "feature_cache"}
    # a group's batch_size equal to the loader's is the same run as none (its fingerprint stays that of none)
    if optim.get("batch_size") == profile["loader"].get("batch_size"):
        optim.pop("batch_size", None)
    relevant = {"run": asdict(run), "data": profile["data"], "loader": loader,
                "optim": optim, "seed": profile["seed"],
                "pretrained": Path(pretrained_file).name if pretrained_file else None,
                "hrnet_form": profile.get("hrnet_form", "reference")}
    if profile.get("bn_momentum") is not None:  # only when set: the fingerprints of other profiles stay as they were
        relevant["bn_momentum"] = profile["bn_momentum"]
    if profile.get("test_flip"):  # (likewise)
        relevant["test_flip"] = True
    if profile.get("validate", "every_epoch") != "every_epoch":  # (likewise)
        relevant["validate"] = profile["validate"]
    if profile.get("channels_last"):  # (likewise; other float rounding, so not the same run)
        relevant["channels_last"] = True
    if source_fingerprint is not None:
        relevant["source"] = source_fingerprint
    if device is not None and device != "cpu":
        relevant["device"] = device
    elif threads is not None:
        relevant["threads"] = int(threads)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _scalars(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {t: {k: v for k, v in r.items() if isinstance(v, int | float)} for t, r in metrics.items()}


def execute_run(run: Run, profile: dict[str, Any], roots: dict[str, Path], out: Path,
                results: dict[str, dict[str, Any]], log: Any, progress: bool = True,
                pretrained_file: str | None = None) -> dict[str, Any]:
    """Train, select on the held-out split, test; returns (and caches) the run's result record.

    The training seed is ``run.seed`` (initialisation, data order, augmentation); the dataset and the
    held-out split depend on the profile's ``seed`` only, so every seed of a row sees the same data.
    """
    import lightning as L
    import torch

    from ..engine.checkpoints import checkpoint_epoch
    from ..engine.evaluation import evaluate_module, load_module
    from ..engine.training import MultiTaskDataModule, MultiTaskModule, default_device, make_trainer, trainer_device
    from ..engine.ufl import ufl_module_from_checkpoint

    run_dir = out / "runs" / run.key
    record_path = run_dir / "result.json"
    init_file = pretrained_file if (run.pretrained and run.group != "ufl") else None
    source = results.get(run.source or "") if run.group == "ufl" else None
    if run.group == "ufl" and source is None:
        raise ConfigError(f"UFL run {run.key} needs the source run {run.source}, which did not run")
    threads = torch.get_num_threads()
    # the device make_trainer below trains on (its default accelerator)
    fingerprint = _fingerprint(run, profile, init_file, source["fingerprint"] if source else None, threads,
                               default_device())
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == fingerprint:
            log(f"{run.key}: reusing {record_path}")
            return record
    optim = dict(profile[run.group])
    epochs = int(optim.pop("epochs"))
    batch_size = train_batch_size(profile, run.group)
    optim.pop("batch_size", None)
    feature_cache = bool(optim.pop("feature_cache", False))
    cache = None
    L.seed_everything(run.seed, workers=True)
    test_flip = bool(profile.get("test_flip", False))
    layout = {"channels_last": True} if profile.get("channels_last") else {}
    if source is not None:
        # the profile's ufl section, not the source's NYUD settings, decides the heads' warm-up (the other keys it
        # may leave out are SPEC's defaults in both)
        optim.setdefault("warmup_epochs", 0.0)
        module = ufl_module_from_checkpoint(source["best_ckpt"], run.tasks, run.dataset, test_flip=test_flip,
                                            **layout, **optim)
    else:
        model_kwargs = {k: profile[k] for k in ("hrnet_form", "bn_momentum") if profile.get(k) is not None} or None
        module = MultiTaskModule(arch=run.model, tasks=run.tasks, aux_tasks=run.aux_tasks, dataset=run.dataset,
                                 pretrained_file=init_file, model_kwargs=model_kwargs, test_flip=test_flip,
                                 **layout, **optim)
    spec = profile["data"][run.dataset]
    loader = profile["loader"]
    data = MultiTaskDataModule(
        dataset=run.dataset, root=str(roots[run.dataset]), size=tuple(spec["size"]),
        batch_size=batch_size, eval_batch_size=int(loader.get("eval_batch_size", 0)) or None,
        num_workers=int(loader["num_workers"]), val_fraction=float(loader["val_fraction"]),
        seed=int(profile["seed"]), scales=spec.get("scales"), rotation=spec.get("rotation"),
        cache=bool(loader.get("cache", False)),
    )
    if feature_cache and source is not None:  # a UFL run: its backbone is frozen
        if data.flips_only:
            from ..models.feature_cache import set_feature_cache

            cache = set_feature_cache(module.net, True, mirror=True)
        else:  # zooms / rotations drawn anew for every input: nothing recurs, a cache would only fill memory
            log(f"{run.key}: ufl.feature_cache is off: the {run.dataset} train augmentation zooms or rotates, so no "
                "training input recurs (data.scales [1.0] and rotation 0: flips only)")
    from ..engine.training import EpochSummary, TrainClock

    last = run_dir / "checkpoints" / "last.ckpt"
    _forget_stale_checkpoints(run.key, run_dir, fingerprint, log)
    clock = TrainClock(run_dir / "checkpoints" / "train_time.json", resumed=last.is_file())
    # validate: last_epoch scores the held-out split after the last epoch only (best.ckpt is then the last
    # epoch's): the same weights, without the evaluation passes of the other epochs
    trainer = make_trainer(
        max_epochs=epochs, default_root_dir=str(run_dir), enable_progress_bar=progress,
        check_val_every_n_epoch=epochs if profile.get("validate") == "last_epoch" else 1,
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=5, deterministic=False,
        callbacks=[clock] if progress else [clock, EpochSummary(f"    {run.key}:")],
    )
    trainer.fit(module, data, ckpt_path=str(last) if last.is_file() else None)
    train_time = clock.total()
    best = Path(trainer.checkpoint_callback.best_model_path or last)
    # scored on the device the run trained on (Lightning hands the module back on the CPU after fit; a CUDA run's
    # test pass on the CPU cost minutes of a GPU machine's time per run)
    device = trainer_device(trainer)
    best_module = load_module(best).to(device)
    data.setup("test")
    t1 = time.time()
    test_metrics = evaluate_module(best_module, data.test_dataloader())
    record = {
        "key": run.key, "run": asdict(run), "fingerprint": fingerprint, "epochs": epochs, "batch_size": batch_size,
        "optim": optim,
        "seed": run.seed, "pretrained_file": init_file, "torch_threads": threads, "device": str(device),
        "best_ckpt": str(best), "best_epoch": checkpoint_epoch(best),
        "params": sum(p.numel() for p in best_module.net.parameters()),
        "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "num_train": len(data.train_ids), "num_heldout": len(data.val_ids), "num_test": len(data.test_ids),
        "test": test_metrics, "train_time_s": round(train_time, 1), "test_time_s": round(time.time() - t1, 1),
    }
    if cache is not None:  # batches served / computed / checked (a resumed run counts its last invocation only)
        record["feature_cache"] = cache.stats()
    write_json(record_path, record)
    return record


def _forget_stale_checkpoints(key: str, run_dir: Path, fingerprint: str, log: Any) -> None:
    """Resume only a run of the same settings: checkpoints left by a run of other settings (another profile
    file, epochs, lr, data, pretraining; or an older version that wrote no fingerprint) are removed, and the
    run starts afresh. ``run_dir/fingerprint`` names the settings its checkpoints belong to."""
    stamp = run_dir / "fingerprint"
    ckpts = run_dir / "checkpoints"
    old = stamp.read_text().strip() if stamp.is_file() else None
    if ckpts.is_dir() and any(ckpts.iterdir()) and old != fingerprint:
        log(f"{key}: the checkpoints in {ckpts} were made with other settings; starting afresh")
        shutil.rmtree(ckpts)
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")


# -- tables ------------------------------------------------------------------------------------------------
def _metric(record: dict[str, Any] | None, task: str) -> float | None:
    if record is None:
        return None
    from ..tasks import get_task

    value = record["test"][task][get_task(task).dm_metric]
    return None if value is None else float(value)  # None: undefined (written as null, see write_json)


def _or_nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)  # None: NaN written as null (see write_json)


def _fmt(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "—"
    if round(v, digits) == 0:
        v = 0.0  # a mean of -0.0004 prints as 0.00 / +0.00, not -0.00
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None, 0
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None, 1
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, var**0.5, len(vals)


def _fmt_ms(values: list[float | None], digits: int = 2, sign: bool = False) -> str:
    """``mean ± std`` over seeds (just the value for one seed)."""
    mean, std, n = _mean_std(values)
    if mean is None:
        return "—"
    text = _fmt(mean, digits, sign)
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _reference(records: list[dict[str, Any]], tasks: list[str]) -> dict[str, dict[str, float]] | None:
    """The Δm reference: single-task metrics averaged over the single-task runs' seeds."""
    from ..tasks import get_task

    if not records:
        return None
    ref: dict[str, dict[str, float]] = {}
    for t in tasks:
        key = get_task(t).dm_metric
        vals = [_or_nan(r["test"][t][key]) for r in records]  # null: the NaN of an undefined metric
        ref[t] = {key: sum(vals) / len(vals)}
    return ref


def _safe_delta_m(record: dict[str, Any] | None, reference: dict[str, Any] | None, tasks: list[str]) -> float | None:
    """Δm, or None where it is undefined (a missing run, or a single-task reference of 0 or NaN after a tiny run).

    A run whose metric is undefined (NaN, written as null in ``results.json``) has a NaN Δm, whether its record
    is the live one or one read back, so that its row's statistics are undefined rather than its seed dropped."""
    if record is None or reference is None:
        return None
    from ..tasks import get_task

    try:
        keys = {t: get_task(t).dm_metric for t in tasks}
        test = {t: {key: _or_nan(record["test"][t][key])} for t, key in keys.items()}
        return delta_m(test, reference, tasks)
    except (ValueError, KeyError):
        return None


def _by_base(results: dict[str, dict[str, Any]], runs: list[Run]) -> dict[str, list[tuple[Run, dict[str, Any]]]]:
    groups: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
    for run in runs:
        if run.key in results:
            groups.setdefault(run.base, []).append((run, results[run.key]))
    return groups


def build_tables(results: dict[str, dict[str, Any]], runs: list[Run]) -> dict[str, Any]:
    """The MTL and UFL tables (one row per model setting, seeds aggregated) and one entry per run.

    Δm is computed per run against the single-task networks' metrics averaged over their seeds; a row shows
    the mean and (with several seeds) the sample standard deviation (n − 1) of its runs.
    """
    groups = _by_base(results, runs)
    ref_nyud = _reference([r for _, r in groups.get("nyud/single_task", [])], NYUD_MAIN)
    ref_pascal = _reference([r for _, r in groups.get("pascal/single_task", [])], UFL_TASKS)
    run_entries: list[dict[str, Any]] = []
    dm_of: dict[str, float | None] = {}
    by_key = {run.key: run for run in runs}

    def n_e(run: Run) -> bool:
        """N+E: the run's own auxiliaries, or for a UFL run those its frozen backbone was trained with."""
        if run.group != "ufl" or not run.source:
            return run.ne
        source = by_key.get(run.source)
        return source.ne if source is not None else run.source.rsplit("/s", 1)[0].endswith("_ne")

    def started_pretrained(run: Run) -> bool:
        # what the run started from, as its record says (a profile without `pretrain:` has no file to start
        # from, whatever the run asked for); records without the field: what it asked for
        rec = results.get(run.key) or {}
        return bool(rec["pretrained_file"]) if "pretrained_file" in rec else run.pretrained

    def pretrained(run: Run) -> bool:
        """Whether the run's backbone started from the shared pretrained one; for a UFL run (which loads its
        source checkpoint, not the pretrained file), whether its frozen backbone's source run did."""
        if run.group != "ufl" or not run.source:
            return started_pretrained(run)
        source = by_key.get(run.source)
        return started_pretrained(source) if source is not None else run.pretrained

    for run in runs:
        rec = results.get(run.key)
        if rec is None:
            continue
        if run.group == "mtl":
            dm = _safe_delta_m(rec, ref_nyud, NYUD_MAIN)
        else:
            dm = _safe_delta_m(rec, ref_pascal, UFL_TASKS)
        dm_of[run.key] = dm
        run_entries.append({
            "name": run.key, "row": run.base, "dataset": run.dataset, "model": run.model, "n_e": n_e(run),
            "seed": run.seed, "ufl": run.group == "ufl", "pretrained": pretrained(run),
            "source": run.source, "metrics": _scalars(rec["test"]), "delta_m": dm,
            "params": rec["params"], "trainable_params": rec["trainable_params"],
            "train_time_s": rec["train_time_s"],
        })

    def seeds_of(items: list[tuple[Run, dict[str, Any]]]) -> list[int]:
        return [run.seed for run, _ in items]

    mtl_rows, scratch_rows, ufl_rows = [], [], []
    seen: set[str] = set()
    for run in runs:
        if run.group != "mtl" or run.base in seen or run.base not in groups:
            continue
        seen.add(run.base)
        items = groups[run.base]
        row = {
            "key": run.base, "model": run.label, "head": run.head, "ne": run.ne, "seeds": seeds_of(items),
            "one_seed": bool(run.extra.get("one_seed")), "pretrained": run.pretrained,
            "semseg_miou": [_metric(r, "semseg") for _, r in items],
            "depth_rmse": [_metric(r, "depth") for _, r in items],
            "delta_m": [dm_of[r.key] for r, _ in items],
            "params_m": items[0][1]["params"] / 1e6,
            "train_time_s": sum(r["train_time_s"] for _, r in items) / len(items),
        }
        (scratch_rows if run.scratch_check else mtl_rows).append(row)
    st_nyud, st_pascal = groups.get("nyud/single_task", []), groups.get("pascal/single_task", [])
    if st_nyud and st_pascal:
        ufl_rows.append({
            "key": "single_task", "model": "ST baseline", "seeds": seeds_of(st_pascal), "one_seed": False,
            "nyud_semseg": [_metric(r, "semseg") for _, r in st_nyud],
            "nyud_depth": [_metric(r, "depth") for _, r in st_nyud],
            "nyud_delta_m": [dm_of[r.key] for r, _ in st_nyud],
            "pascal_parts": [_metric(r, "human_parts") for _, r in st_pascal],
            "pascal_sal": [_metric(r, "sal") for _, r in st_pascal],
            "pascal_delta_m": [dm_of[r.key] for r, _ in st_pascal],
        })
    seen = set()
    for run in runs:
        if run.group != "ufl" or run.base in seen or run.base not in groups:
            continue
        seen.add(run.base)
        items = groups[run.base]
        sources = [results.get(r.source or "") for r, _ in items]
        ufl_rows.append({
            "key": run.base, "model": run.label, "source": run.source.rsplit("/s", 1)[0] if run.source else None,
            "seeds": seeds_of(items), "one_seed": bool(run.extra.get("one_seed")),
            "nyud_semseg": [_metric(s, "semseg") for s in sources],
            "nyud_depth": [_metric(s, "depth") for s in sources],
            "nyud_delta_m": [_safe_delta_m(s, ref_nyud, NYUD_MAIN) for s in sources],
            "pascal_parts": [_metric(r, "human_parts") for _, r in items],
            "pascal_sal": [_metric(r, "sal") for _, r in items],
            "pascal_delta_m": [dm_of[r.key] for r, _ in items],
            "trainable_params_m": items[0][1]["trainable_params"] / 1e6,
        })
    return {"mtl": mtl_rows, "ufl": ufl_rows, "scratch": scratch_rows, "runs": run_entries}


def _seeds_note(row: dict[str, Any]) -> str:
    n = len(row.get("seeds") or [])
    return f"{n}" + (" ¹" if row.get("one_seed") else "")


def mtl_markdown(rows: list[dict[str, Any]], trivial: dict[str, Any] | None = None,
                 flags: dict[str, dict[str, str]] | None = None) -> str:
    flags = flags or {}
    lines = ["| Model | Head | N+E | Seeds | Seg mIoU ↑ | Depth RMSE ↓ | Δm % ↑ | Params (M) | Train time (s) |",
             "|---|---|:-:|:-:|--:|--:|--:|--:|--:|"]
    if trivial:
        lines.append(f"| trivial predictor (constant) | — | | — | {_fmt(trivial['semseg']['mIoU'])} | "
                     f"{_fmt(trivial['depth']['rmse'], 3)} | | 0 | 0 |")
    for r in rows:
        f = flags.get(r["key"], {})
        lines.append(f"| {r['model']} | {r['head']} | {'✓' if r['ne'] else ''} | {_seeds_note(r)} | "
                     f"{_fmt_ms(r['semseg_miou'])}{f.get('semseg', '')} | {_fmt_ms(r['depth_rmse'], 3)}"
                     f"{f.get('depth', '')} | {_fmt_ms(r['delta_m'], 2, True)} | {r['params_m']:.2f} | "
                     f"{r['train_time_s']:.0f} |")
    return "\n".join(lines)


def ufl_markdown(rows: list[dict[str, Any]], trivial: dict[str, Any] | None = None,
                 flags: dict[str, dict[str, str]] | None = None) -> str:
    flags = flags or {}
    lines = ["| Model | Seeds | NYUD Seg ↑ | NYUD Depth ↓ | NYUD Δm % | PASCAL Parts ↑ | PASCAL Sal ↑ | PASCAL Δm % |",
             "|---|:-:|--:|--:|--:|--:|--:|--:|"]
    if trivial and "nyud" in trivial and "pascal" in trivial:
        tn, tp = trivial["nyud"], trivial["pascal"]
        lines.append(f"| trivial predictor (constant) | — | {_fmt(tn['semseg']['mIoU'])} | "
                     f"{_fmt(tn['depth']['rmse'], 3)} | | {_fmt(tp['human_parts']['mIoU'])} | "
                     f"{_fmt(tp['sal']['mIoU'])} | |")
    for r in rows:
        f = flags.get(r["key"], {})
        lines.append(f"| {r['model']} | {_seeds_note(r)} | {_fmt_ms(r['nyud_semseg'])} | "
                     f"{_fmt_ms(r['nyud_depth'], 3)} | {_fmt_ms(r['nyud_delta_m'], 2, True)} | "
                     f"{_fmt_ms(r['pascal_parts'])}{f.get('human_parts', '')} | {_fmt_ms(r['pascal_sal'])}"
                     f"{f.get('sal', '')} | {_fmt_ms(r['pascal_delta_m'], 2, True)} |")
    return "\n".join(lines)


def learned_flags(tables: dict[str, Any], trivial: dict[str, dict[str, Any]] | None
                  ) -> tuple[dict[str, dict[str, dict[str, str]]], list[dict[str, Any]]]:
    """Compare every row with the trivial predictor (:data:`medusa_mtl.reports.claims.LEARNED_CRITERIA`).

    Returns the markers to print next to numbers (``"mtl"``/``"ufl"`` -> row key -> task -> marker) and one
    check per (row, task) with the worst seed's ratio to the trivial value.
    """
    from .claims import LEARNED_CRITERIA, learned

    flags: dict[str, dict[str, dict[str, str]]] = {"mtl": {}, "ufl": {}}
    checks: list[dict[str, Any]] = []
    if not trivial:
        return flags, checks
    columns = {"mtl": [("semseg", "nyud", "semseg_miou"), ("depth", "nyud", "depth_rmse")],
               "ufl": [("human_parts", "pascal", "pascal_parts"), ("sal", "pascal", "pascal_sal")]}
    for table, cols in columns.items():
        for row in tables.get(table, []):  # the from-scratch comparison runs are not benchmark rows
            for task, ds, col in cols:
                # every seed of the row has a record; None is a metric undefined on a seed (NaN, written as null)
                values = [_or_nan(v) for v in row.get(col) or []]
                if not values or task not in trivial.get(ds, {}):
                    continue
                metric, factor = LEARNED_CRITERIA[task]
                triv = float(trivial[ds][task][metric])
                results = [learned(task, v, triv) for v in values]
                worst = max(r[1] for r in results) if task == "depth" else min(r[1] for r in results)
                if any(math.isnan(v) for v in values):  # a seed without a value has not cleared the bar
                    worst = math.nan  # (max/min over a NaN depends on where it sits)
                ok = all(r[0] for r in results)
                mean_ratio = learned(task, sum(values) / len(values), triv)[1]  # shown; the bar is the worst seed's
                checks.append({"row": row["key"], "model": row["model"], "task": task, "metric": metric,
                               "trivial": triv, "worst_ratio": worst, "mean_ratio": mean_ratio,
                               "required": factor, "learned": ok})
                if not ok:
                    flags[table].setdefault(row["key"], {})[task] = _miss_marker(task, worst)
    return flags, checks


def _miss_marker(task: str, worst_ratio: float) -> str:
    """The marker of a number that misses its bar: at, worse than, or better than the constant predictor."""
    if math.isnan(worst_ratio):
        return " (undefined on a seed)"
    # as a quality (higher is better) ratio: depth's RMSE ratio inverted
    quality = 1.0 / worst_ratio if task == "depth" and worst_ratio > 0 else worst_ratio
    if quality < 1 / 1.1:
        return " (worse than trivial)"
    if quality <= 1.1:
        return " (trivial level)"
    return " (below target)"


def _ratio_text(ratio: float, required: float) -> str:
    """``0.57x``: two decimals, or three where two would print the bar itself (0.504 missing 0.5 must not read
    0.50x); ``undefined`` for NaN."""
    if math.isnan(ratio):
        return "undefined"
    text = f"{ratio:.2f}"
    return (f"{ratio:.3f}" if float(text) == float(required) and ratio != float(required) else text) + "x"


def _checks_markdown(checks: list[dict[str, Any]]) -> str:
    lines = ["| Row | Task | Trivial | Worst seed / trivial | Mean / trivial | Required | Learned |",
             "|---|---|--:|--:|--:|--:|:-:|"]
    for c in checks:
        op = "≤" if c["task"] == "depth" else "≥"
        mean = c.get("mean_ratio")  # absent from checks recorded before it was added
        lines.append(f"| {c['model']} (`{c['row']}`) | {c['task']} {c['metric']} | {c['trivial']:.3f} | "
                     f"{_ratio_text(c['worst_ratio'], c['required'])} | "
                     f"{'—' if mean is None else _ratio_text(mean, c['required'])} | "
                     f"{op} {c['required']}x | "
                     f"{'yes' if c['learned'] else '**no**'} |")
    return "\n".join(lines)


NOISE_BAR = 2.0  # issue #10 item 3: the seed std of each multi-seed row's Δm is at most 2 points


def noise_checks(tables: dict[str, Any]) -> list[dict[str, Any]]:
    """One check per table row with several seeds: the sample standard deviation (n − 1, as the tables print)
    of its Δm (NYUD Δm for the MTL rows, PASCAL Δm for the UFL rows) against :data:`NOISE_BAR`."""
    checks: list[dict[str, Any]] = []
    for table, col, dataset in (("mtl", "delta_m", "nyud"), ("ufl", "pascal_delta_m", "pascal")):
        for row in tables.get(table, []):  # the from-scratch comparison runs are not benchmark rows
            _, std, n = _mean_std(row.get(col) or [])
            if std is None:
                continue
            checks.append({"row": row["key"], "model": row["model"], "ne": bool(row.get("ne")), "dataset": dataset,
                           "seeds": n, "delta_m_std": std, "required": NOISE_BAR, "ok": std <= NOISE_BAR})
    return checks


def _noise_markdown(checks: list[dict[str, Any]]) -> str:
    lines = ["| Row | Δm | Seeds | Δm std | Required | Small enough |", "|---|---|:-:|--:|--:|:-:|"]
    for c in checks:
        lines.append(f"| {c['model']}{' (N+E)' if c['ne'] else ''} (`{c['row']}`) | "
                     f"{'NYUD' if c['dataset'] == 'nyud' else 'PASCAL'} | {c['seeds']} | {c['delta_m_std']:.2f} | "
                     f"≤ {c['required']:g} | {'yes' if c['ok'] else '**no**'} |")
    return "\n".join(lines)


def _scratch_markdown(tables: dict[str, Any]) -> str:
    rows = {r["key"]: r for r in tables["mtl"]}
    lines = ["| Run | Init | Seg mIoU ↑ | Depth RMSE ↓ | Δm % ↑ |", "|---|---|--:|--:|--:|"]
    for r in tables.get("scratch", []):
        twin = rows.get(r["key"].removesuffix("_scratch"))
        if twin is None:
            continue
        seed = r["seeds"][0]
        i = twin["seeds"].index(seed) if seed in twin["seeds"] else 0  # else the twin's first seed, labelled so
        for label, row, j in (("pretrained backbone", twin, i), ("from scratch", r, 0)):
            lines.append(f"| {row['model']}{' (N+E)' if row['ne'] else ''}, seed {row['seeds'][j]} | {label} | "
                         f"{_fmt(row['semseg_miou'][j])} | {_fmt(row['depth_rmse'][j], 3)} | "
                         f"{_fmt(row['delta_m'][j], 2, True)} |")
    return "\n".join(lines)


def write_report(out: Path, profile: dict[str, Any], tables: dict[str, Any], results: dict[str, Any],
                 extras: dict[str, Any], prov: dict[str, Any]) -> Path:
    """Write ``REPORT.md`` from measured numbers only."""
    from .claims import claims_markdown

    d = profile["data"]
    some = next(iter(results.values()), None)
    trivial = extras.get("trivial")
    flags = extras.get("flags") or {}
    pre = extras.get("pretrain")
    seeds = profile.get("seeds") or [profile["seed"]]
    last_only = profile.get("validate") == "last_epoch"
    form = ("the reference implementation's form: bilinear fuse layers, BN momentum 0.01"
            if profile.get("hrnet_form", "reference") == "reference" else "timm's form: nearest-neighbour fuse layers")
    if profile.get("bn_momentum") is not None:
        form = form.replace("BN momentum 0.01", f"BN momentum {profile['bn_momentum']} while fine-tuning (the "
                            "profile's bn_momentum; 0.01 in pretraining)")
    init = (f"HRNet-W18-small-v2 ({form}) initialised from the shared pretrained backbone (below)" if pre
            else f"HRNet-W18-small-v2 ({form}) from scratch")
    lines = [
        f"# medusa-mtl benchmark report — profile `{profile['profile']}`",
        "",
        f"Written by `medusa benchmark --profile {profile['profile']}` on {prov['time_utc']} "
        f"(data seed {profile['seed']}, training seeds {seeds}, torch {prov['versions']['torch']}, "
        f"timm {prov['versions']['timm']}, device {prov['device']}, {prov.get('cpu_count')} CPUs, "
        f"wall time {prov.get('wall_time_s', 0):.0f} s"
        + (f" over {prov['invocations']} invocations (interrupted and resumed; each one's time counts)"
           if (prov.get("invocations") or 1) > 1 else "")
        + (f" plus {pre['wall_time_s']:.0f} s of pretraining ({'cached' if pre.get('cached') else 'this run'})"
           if pre else "")
        + (f"; the machine's reference training step: {prov['reference_step_s']:.3f} s (one thread, "
           "`medusa_mtl.reports.wallclock.reference_step_time`)" if prov.get("reference_step_s") else "")
        + (f", commit {prov['commit']}" if prov.get("commit") else "")
        + "). Every number below was measured by that run; `results.json` holds them all.",
        "",
        *([extras["rerendered"], ""] if extras.get("rerendered") else []),
        "**Setup.** Synthetic NYUD-like rooms "
        f"({d['nyud']['num_train']} train / {d['nyud']['num_val']} test images at {_size_text(d['nyud']['size'])}) "
        "and synthetic PASCAL-like scenes with articulated figures "
        f"({d['pascal']['num_train']} / {d['pascal']['num_val']} at {_size_text(d['pascal']['size'])}); "
        f"{init}. "
        + "".join(f"{name.upper()} training scale augmentation: {', '.join(f'{v:g}' for v in d[name]['scales'])} "
                  "(the profile's, instead of SPEC's protocol). " for name in ("nyud", "pascal")
                  if d[name].get("scales") is not None)
        + "".join(f"{name.upper()} training rotations: {_rotation_text(d[name]['rotation'])} "
                  "(the profile's, instead of SPEC's protocol). " for name in ("nyud", "pascal")
                  if d[name].get("rotation") is not None)
        + f"MTL: {profile['mtl']['epochs']} epochs, {profile['mtl']['optimizer']} lr {profile['mtl']['lr']}"
        f"{_schedule_notes(profile['mtl'])}; "
        f"PASCAL ST: {profile['st_pascal']['epochs']} epochs, {profile['st_pascal']['optimizer']} "
        f"lr {profile['st_pascal']['lr']}{_schedule_notes(profile['st_pascal'])}; "
        f"UFL: {profile['ufl']['epochs']} epochs, {profile['ufl']['optimizer']} "
        f"lr {profile['ufl']['lr']}{_schedule_notes(profile['ufl'])}. " + _batch_text(profile)
        + ("Each run's checkpoint is its last epoch's: the held-out " if last_only
           else "Checkpoints are selected on a held-out ")
        + f"{int(profile['loader']['val_fraction'] * 100)}% of train"
        + (f" ({some['num_heldout']} images)" if some else "")
        + (" is scored after the last epoch only (the profile's validate: last_epoch)" if last_only else "")
        + "; the tables report the test split (the original works selected on test). "
        + ("Every run is scored (held-out split and test) on the mean of its outputs for each image and for "
           "its mirror image, mirrored back (the profile's test_flip, instead of SPEC's single output; the trivial "
           "predictor is unchanged by it). " if profile.get("test_flip") else "")
        + ("Every network trains and is scored in the NHWC memory format (the profile's channels_last: faster "
           "on the CPU, the same computation up to float rounding). " if profile.get("channels_last") else "")
        + "Rows show mean ± sample standard deviation (n − 1) over training seeds (same data, different "
        "initialisation of the "
        "heads, data order and augmentation); ¹ marks rows run with one seed only. Δm of every run is "
        "against the single-task networks' metrics averaged over their seeds. The trivial predictor is the best "
        "constant prediction fitted on the training split and scored on the test split like a model.",
        "",
        "## Multi-task learning on synthetic NYUD (paper Table 1 format)",
        "",
        "Δm over the main tasks (semseg, depth) against the single-task networks; N+E = normals and edges as "
        "auxiliary tasks (never scored).",
        "",
        mtl_markdown(tables["mtl"], trivial.get("nyud") if trivial else None, flags.get("mtl")),
        "",
        "## Universal feature learning on synthetic PASCAL (paper Table 2 format)",
        "",
        "Each method's NYUD backbone (N+E where the method has that variant; the same seed) is frozen; only new "
        "heads for human parts and saliency are trained. PASCAL Δm is against PASCAL single-task networks "
        "trained fully.",
        "",
        ufl_markdown(tables["ufl"], trivial, flags.get("ufl")),
        "",
    ]
    if extras.get("checks"):
        lines += ["## Is every main task learned?", "",
                  "Each row's worst seed against the trivial predictor (issue #10's bar: semseg mIoU ≥ 8x, "
                  "human parts ≥ 2x, saliency ≥ 1.5x, depth RMSE ≤ 0.5x; checked on the worst seed, the mean "
                  "over seeds shown beside it). Numbers that miss it are marked in the "
                  "tables above: *(trivial level)* within 10 % of the constant predictor, *(worse than trivial)* "
                  "more than 10 % worse than it, *(below target)* better than it but short of the bar, "
                  "*(undefined on a seed)* a seed whose value is undefined (NaN).", "",
                  _checks_markdown(extras["checks"]), ""]
    if extras.get("noise"):
        lines += ["## Is the seed noise small enough?", "",
                  "The sample standard deviation (n − 1) over training seeds of each multi-seed row's Δm (issue "
                  f"#10's bar: at most {NOISE_BAR:g} points); NYUD Δm for the MTL rows, PASCAL Δm for the UFL rows. "
                  "Rows with one seed have no spread to measure.", "",
                  _noise_markdown(extras["noise"]), ""]
    if pre:
        hist = pre.get("history") or [{}]
        lines += ["## Pretrained backbone", "",
                  f"`medusa pretrain` ({pre.get('objective')}) on {pre['settings']['num_images']} rendered images at "
                  f"{pre['settings']['size'][0]}x{pre['settings']['size'][1]} from a seed stream disjoint from the "
                  f"benchmark's datasets, {pre['settings']['epochs']} epochs, {pre['wall_time_s']:.0f} s "
                  f"(counted separately from the benchmark's wall time); held-out presence accuracy "
                  f"{_or_nan(hist[-1].get('holdout_accuracy')):.3f}. File `{pre['file']}`; every method "
                  "starts from it."]
        if tables.get("scratch"):
            lines += ["", "Does it help? The same model and seed, pretrained vs from scratch:", "",
                      _scratch_markdown(tables)]
        lines.append("")
    if extras.get("resources_md"):
        lines += ["## Resources (NYUD setting, 480x640, from `medusa resources`)", "",
                  extras["resources_md"].strip(), ""]
    if extras.get("resources_png"):
        lines += [f"![parameters and FLOPs against the number of tasks]({extras['resources_png']})", ""]
    if extras.get("predictions"):
        lines += ["## Example predictions (Medusa, N+E)", ""]
        lines += [f"![{p}]({p})" for p in extras["predictions"]]
        lines.append("")
    if extras.get("claims") is not None:
        lines += ["## Claims", "",
                  "Each claim of the paper against this run's numbers. Differences are of means over seeds, with "
                  "a 95 % Welch t interval from the seed-to-seed spread (a one-seed row borrows the other row's "
                  "variance). With few seeds the intervals are wide: *not resolved* means this run cannot "
                  "tell, not that the claim is false.", "",
                  claims_markdown(extras["claims"]) if extras["claims"] else "(no claim could be checked: rows "
                  "missing)", ""]
    path = out / "REPORT.md"
    tmp = path.with_name(".REPORT.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path


# -- command -----------------------------------------------------------------------------------------------
def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa benchmark``."""
    parser.add_argument("--profile", default="quick",
                        help="quick, standard, full (`medusa configs` lists them), or a profile YAML path")
    parser.add_argument("--out", default="results", type=output_dir,
                        help="output folder (REPORT.md, results.json, runs/)")
    parser.add_argument("--data-dir", default="data/synthetic", type=output_dir,
                        help="where the synthetic datasets live")
    parser.add_argument("--models", default=None, help="comma-separated subset of models (default: all)")
    parser.add_argument("--seed", type=int, default=None,
                        help="override the profile's data seed (`seed:`: the synthetic datasets and the held-out "
                             "split); the training seeds are the profile's `seeds:`")
    parser.add_argument("--no-progress", action="store_true", help="no per-batch progress bars")
    parser.add_argument("--skip-resources", action="store_true", help="do not run the resource report")
    parser.add_argument("--pretrain-cache", default="data/pretrained", type=output_dir,
                        help="where the shared pretrained backbone is cached (see `medusa pretrain`)")
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="runs trained at once, one torch thread each (default: 2 on a multi-core CPU, 1 on GPU)")
    parser.add_argument("--plan", action="store_true",
                        help="train nothing: print every run of the profile (epochs, optimizer steps, and whether a "
                             "finished result in --out is reused or a checkpoint resumed) and exit")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rewrite REPORT.md in --out from its results.json with this version's "
                             "report code (figures already in --out are reused)")


def run_benchmark(args: argparse.Namespace) -> int:
    """``medusa benchmark``."""
    if getattr(args, "report_only", False):
        rerender_report(Path(args.out))
        return 0
    import torch

    start = time.time()
    profile = load_profile(args.profile)
    if args.seed is not None:
        profile["seed"] = args.seed
    methods = [m.strip() for m in args.models.split(",")] if args.models else None
    if methods:
        known = [m[0] for m in METHODS]
        bad = [m for m in methods if m not in known]
        if bad:
            raise ConfigError(f"--models: unknown {bad}; known: {known}")
        if "single_task" not in methods:
            methods = ["single_task", *methods]  # Δm needs the single-task references
    if getattr(args, "plan", False):
        jobs = args.jobs if args.jobs is not None else _default_jobs()
        print("\n".join(plan_lines(profile, methods, Path(args.out), Path(args.pretrain_cache), jobs)), flush=True)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _quiet_lightning()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:6.0f}s] {msg}", flush=True)

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    seed = int(profile["seed"])
    pretrained_file, pre_record = _pretrained_backbone(profile, Path(args.pretrain_cache), log)
    start = time.time()  # the pretraining is counted separately (it is cached and shared)
    # every invocation into this --out counts: a resumed benchmark reports the time of all its attempts. Its
    # key is the runs' settings fingerprints: an invocation that would reuse or resume them is the same benchmark
    jobs = args.jobs if args.jobs is not None else _default_jobs()
    key = _ledger_key(profile, plan_fingerprints(profile, methods, Path(args.pretrain_cache), jobs))
    ledger = WallLedger(out / "wall_clock.json", key=key,
                        extra={"commit": _git_commit(), "reference_step_s": reference_step_time()})
    try:
        return _run_benchmark(args, profile, methods, out, seed, jobs, pretrained_file, pre_record, ledger, log)
    finally:
        ledger.close(finished=False)  # no-op after a finished run (it closed the ledger before its report)


def _ledger_key(profile: dict[str, Any], fingerprints: dict[str, str]) -> dict[str, Any]:
    """What makes two invocations into one ``--out`` the same benchmark for its wall-time ledger: the runs they
    would reuse or resume (their settings fingerprints)."""
    return {"profile": profile["profile"], "runs": fingerprints}


def _run_benchmark(args: argparse.Namespace, profile: dict[str, Any], methods: list[str] | None, out: Path,
                   seed: int, jobs: int, pretrained_file: Path | None, pre_record: dict[str, Any] | None,
                   ledger: WallLedger, log: Any) -> int:
    data_dir = Path(args.data_dir)
    roots = {ds: dataset_root(data_dir, ds, profile["data"][ds], seed) for ds in ("nyud", "pascal")}
    for ds, root in roots.items():
        ensure_dataset(root, ds, profile["data"][ds], seed, log)
    trivial = _trivial(roots, profile, log)
    runs = plan_runs(methods, profile)
    from ..engine.training import default_device

    on = default_device()
    log(f"{len(runs)} runs, {jobs} at a time" + (" (one torch thread each)" if jobs > 1 and on == "cpu" else "")
        + (f", training on {on}" if on != "cpu" else ""))
    results: dict[str, dict[str, Any]] = {}
    done = 0

    def finished(run: Run, rec: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        results[run.key] = rec
        summary = ", ".join(f"{t} {k}={v:.4g}" for t, r in _scalars(rec["test"]).items()
                            for k, v in r.items() if k in ("mIoU", "rmse"))
        log(f"[{done}/{len(runs)}] {run.key} done: {summary} (train {rec['train_time_s']:.0f} s)")

    # UFL runs need their source checkpoints: each starts once its source has finished.
    ordered = sorted((r for r in runs if r.group != "ufl"), key=_cost_rank) + [r for r in runs if r.group == "ufl"]
    if jobs <= 1:
        for run in ordered:
            log(f"start {run.key}: {_describe(run)}")
            finished(run, execute_run(run, profile, roots, out, results, log, progress=not args.no_progress,
                                      pretrained_file=pretrained_file))
    else:
        _run_parallel(ordered, jobs, profile, roots, out, results, log, finished, pretrained_file)
    tables, extras = _tables_and_checks(results, runs, trivial, pre_record)
    if not args.skip_resources:
        extras.update(_resources(out, log))
    extras["predictions"] = _predictions(out, results, roots, profile, log)
    extras["claims"] = _claims(tables, log)
    ledger.close()
    wall, invocations = ledger.total(), ledger.invocations()
    # the parent's torch_threads is not the workers': each run records its own (run_records[].torch_threads)
    prov = provenance(profile=profile["profile"], seed=seed, seeds=profile.get("seeds"), wall_time_s=wall,
                      commit=_git_commit(), jobs=jobs, run_torch_threads=_run_threads(jobs),
                      invocations=len(invocations), reference_step_s=invocations[-1].get("reference_step_s"))
    write_json(out / "results.json", {
        "profile": profile["profile"], "wall_time_s": wall, "invocations": invocations,
        "pretrain_wall_time_s": pre_record["wall_time_s"] if pre_record else None,
        "trivial": trivial, "runs": tables["runs"], "claims": extras["claims"], "learned": extras["checks"],
        "noise": extras["noise"],
        "provenance": prov, "profile_settings": profile, "pretrain": pre_record,
        "tables": {k: v for k, v in tables.items() if k != "runs"},
        "run_records": results, "datasets": {k: str(v) for k, v in roots.items()},
        "figures": extras["predictions"],
    })
    report = write_report(out, profile, tables, results, extras, prov)
    _print_tables(tables, extras)
    log(f"wrote {report} and {out / 'results.json'}")
    return 0


def _tables_and_checks(results: dict[str, dict[str, Any]], runs: list[Run], trivial: dict[str, Any] | None,
                       pretrain: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tables of the recorded runs and the report's extras derived from them (trivial row, learned checks)."""
    tables = build_tables(results, runs)
    flags, checks = learned_flags(tables, trivial)
    return tables, {"trivial": trivial, "flags": flags, "checks": checks, "noise": noise_checks(tables),
                    "pretrain": pretrain}


def _print_tables(tables: dict[str, Any], extras: dict[str, Any]) -> None:
    trivial, flags = extras.get("trivial") or {}, extras.get("flags") or {}
    print()
    print(mtl_markdown(tables["mtl"], trivial.get("nyud"), flags.get("mtl")))
    print()
    print(ufl_markdown(tables["ufl"], trivial, flags.get("ufl")))
    print()
    if extras.get("claims"):
        from .claims import claims_markdown

        print(claims_markdown(extras["claims"]))
        print()


def _existing_predictions(out: Path) -> list[str]:
    """The prediction figures under ``out/predictions`` in report order (per image: panel, sfa, msa)."""
    order = {"panel.png": 0, "sfa.png": 1, "msa.png": 2}
    folder = out / "predictions"
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*/*.png") if p.name in order]
    found.sort(key=lambda p: (p.parent.name, order[p.name]))
    return [p.relative_to(out).as_posix() for p in found]


def rerender_report(out: Path) -> Path:
    """Rewrite ``out/REPORT.md`` from ``out/results.json`` with the installed report code; nothing is trained.

    The tables, learned checks and claims are recomputed from the recorded runs (``run_records``), so a
    report written by an older version shows the same measurements in the current format. The header keeps the
    run's own provenance (time, commit, wall time) and says that the report was re-rendered, and by which
    commit. Figures already in ``out`` (resource plot, example predictions) are linked, not redrawn.

    Example:
        >>> rerender_report(Path("results/standard"))  # doctest: +SKIP
    """
    path = out / "results.json"
    if not path.is_file():
        raise ConfigError(f"--report-only: {path} not found; --out must be the folder of a finished benchmark "
                          "(the one holding its results.json)")
    try:
        saved = json.loads(path.read_text())
        profile, results, prov = saved["profile_settings"], saved["run_records"], saved["provenance"]
        trivial = saved.get("trivial")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"--report-only: {path} is not a benchmark results file (expected the keys "
                          f"profile_settings, run_records and provenance): {exc!r}") from exc
    runs = [r for r in plan_runs(None, profile) if r.key in results]
    tables, extras = _tables_and_checks(results, runs, trivial, saved.get("pretrain"))
    extras.update({k: v for k, v in _resource_figures(out).items() if v is not None})
    figures = saved.get("figures")
    extras["predictions"] = figures if figures is not None else _existing_predictions(out)
    extras["claims"] = _claims(tables, lambda msg: None) if saved.get("claims") is not None else None
    commit = _git_commit()
    extras["rerendered"] = ("This report was re-rendered from that run's `results.json` by "
                            "`medusa benchmark --report-only`"
                            + (f" at commit {commit}" if commit else "")
                            + f" on {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; the measurements "
                            "are the run's, the formatting and the derived checks are this version's.")
    report = write_report(out, profile, tables, results, extras, prov)
    _print_tables(tables, extras)
    print(f"rewrote {report} from {path}", flush=True)
    return report


def _git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` when files differ from it), or None outside a git checkout."""
    import subprocess

    try:
        root = Path(__file__).resolve().parents[3]  # the checkout: src/medusa_mtl/reports/ -> root
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def plan_lines(profile: dict[str, Any], methods: list[str] | None, out: Path, cache: Path, jobs: int) -> list[str]:
    """What ``medusa benchmark`` would do with these settings, without doing any of it (``--plan``): one line per
    run (epochs, optimizer steps, and whether ``out`` holds its finished result for the same settings, which is
    reused, or checkpoints of the same settings, which are resumed), then the totals.

    The settings fingerprints are those :func:`execute_run` computes (torch threads: 1 per job with ``jobs`` > 1;
    on CUDA the device instead).
    """
    from ..engine.training import default_device, heldout_size

    pre_file = _pretrain_file(profile, cache)
    threads = _run_threads(jobs)
    device = default_device()
    lines = [f"profile {profile['profile']}: data seed {profile['seed']}, training seeds {profile.get('seeds')}, "
             f"{jobs} job(s) at a time, "
             + (f"{threads} torch thread(s) per run" if device == "cpu" else f"training on {device}")]
    if pre_file is not None:
        there = pre_file.is_file() and pre_file.with_suffix(".json").is_file()
        where_text = "the CPU" if device == "cpu" else device  # pretrain's --device auto: the same rule
        lines.append(f"pretrained backbone {pre_file}: "
                     + ("cached" if there else f"absent: pretrained first (on {where_text})"))
    fingerprints = _fingerprints(profile, methods, pre_file, threads, device)
    counts = {"reused": 0, "resumed": 0, "new": 0}
    steps_left = 0
    for run in plan_runs(methods, profile):
        fp = fingerprints[run.key]
        spec = profile["data"][run.dataset]
        n_train = spec["num_train"] - heldout_size(spec["num_train"], float(profile["loader"]["val_fraction"]))
        batch = train_batch_size(profile, run.group)
        per_epoch = n_train // batch if n_train > batch else 1  # the train loader drops its last partial batch
        epochs = int(profile[run.group]["epochs"])
        run_dir = out / "runs" / run.key
        record = run_dir / "result.json"
        stamp = run_dir / "fingerprint"
        if record.is_file() and json.loads(record.read_text()).get("fingerprint") == fp:
            status = "reused (finished, same settings)"
            counts["reused"] += 1
        elif (run_dir / "checkpoints" / "last.ckpt").is_file() and stamp.is_file() and stamp.read_text().strip() == fp:
            status = "resumes from its last.ckpt"
            counts["resumed"] += 1
            steps_left += epochs * per_epoch  # an upper bound: the epochs already done are skipped
        else:
            status = "to train"
            counts["new"] += 1
            steps_left += epochs * per_epoch
        lines.append(f"  {run.key:<32} {run.group:<9} {epochs:>3} epochs x {per_epoch:>4} steps of {batch:>2} = "
                     f"{epochs * per_epoch:>6} steps  {status}")
    lines.append(f"{sum(counts.values())} runs: {counts['reused']} reused, {counts['resumed']} resumed, "
                 f"{counts['new']} to train; at most {steps_left} optimizer steps "
                 "left to train")
    earlier = recorded_invocations(out / "wall_clock.json", _ledger_key(profile, fingerprints))
    if earlier:
        lines.append(f"wall time so far: {sum(float(e.get('wall_time_s', 0)) for e in earlier):.0f} s over "
                     f"{len(earlier)} invocation(s) of these runs into {out}; the report's wall time adds the next")
    return lines


def plan_fingerprints(profile: dict[str, Any], methods: list[str] | None, cache: Path, jobs: int) -> dict[str, str]:
    """The settings fingerprint :func:`execute_run` gives each run of the plan (run key -> fingerprint)."""
    from ..engine.training import default_device

    return _fingerprints(profile, methods, _pretrain_file(profile, cache), _run_threads(jobs), default_device())


def _fingerprints(profile: dict[str, Any], methods: list[str] | None, pre_file: Path | None,
                  threads: int, device: str = "cpu") -> dict[str, str]:
    fingerprints: dict[str, str] = {}
    for run in plan_runs(methods, profile):
        init = str(pre_file) if (pre_file is not None and run.pretrained and run.group != "ufl") else None
        fingerprints[run.key] = _fingerprint(run, profile, init, fingerprints.get(run.source or ""), threads,
                                             device)
    return fingerprints


def _run_threads(jobs: int) -> int:
    """Torch threads of each run: one per run when several run at once, else the process's."""
    import torch

    return 1 if jobs > 1 else torch.get_num_threads()


def _pretrain_file(profile: dict[str, Any], cache: Path) -> Path | None:
    """Where the profile's shared pretrained backbone is (or will be) cached; None without ``pretrain:``."""
    from ..engine.pretrain import cached_path

    settings = _pretrain_settings(profile, cache)
    return cached_path(settings, cache) if settings is not None else None


def _pretrain_settings(profile: dict[str, Any], cache: Path) -> Any:
    """The :class:`~medusa_mtl.engine.pretrain.PretrainSettings` of the profile's shared backbone (None without
    ``pretrain:``): ``pretrain_prefer: <profile>``'s when that one is cached with the same HRNet form."""
    from ..engine.pretrain import PretrainSettings, cached_path

    if not profile.get("pretrain"):
        return None

    def settings_of(p: dict[str, Any]) -> PretrainSettings:  # the profile's HRNet form unless pretrain: says
        return PretrainSettings.from_dict({"hrnet_form": p.get("hrnet_form", "reference"), **p["pretrain"]})

    settings = settings_of(profile)
    prefer = profile.get("pretrain_prefer")
    if prefer:
        other = load_profile(str(prefer))
        if other.get("pretrain"):
            candidate = settings_of(other)
            path = cached_path(candidate, cache)
            if candidate.hrnet_form == settings.hrnet_form and path.is_file() and path.with_suffix(".json").is_file():
                settings = candidate
    return settings


def _pretrained_backbone(profile: dict[str, Any], cache: Path, log: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The shared pretrained backbone of the profile (``pretrain:``), made once and cached.

    ``pretrain_prefer: <profile>`` uses that profile's backbone when it is already cached (e.g. the quick
    profile reuses the standard profile's) and otherwise makes the profile's own, cheaper one.
    """
    from ..engine.pretrain import cached_path, ensure_pretrained, pretrain_record

    settings = _pretrain_settings(profile, cache)
    if settings is None:
        return None, None
    path = cached_path(settings, cache)
    cached = path.is_file() and path.with_suffix(".json").is_file()
    path = ensure_pretrained(settings, cache, log=log)
    record = pretrain_record(path)
    record["cached"] = cached
    record["path"] = str(path)
    return str(path), record


def _trivial(roots: dict[str, Path], profile: dict[str, Any], log: Any) -> dict[str, dict[str, Any]]:
    from .trivial import trivial_predictor

    t0 = time.time()
    out = {"nyud": trivial_predictor("nyud", roots["nyud"], NYUD_MAIN, size=profile["data"]["nyud"]["size"]),
           "pascal": trivial_predictor("pascal", roots["pascal"], UFL_TASKS, size=profile["data"]["pascal"]["size"])}
    log(f"trivial predictor ({time.time() - t0:.0f} s): NYUD semseg mIoU {out['nyud']['semseg']['mIoU']:.2f}, "
        f"depth RMSE {out['nyud']['depth']['rmse']:.3f}; PASCAL parts mIoU {out['pascal']['human_parts']['mIoU']:.2f}, "
        f"sal mIoU {out['pascal']['sal']['mIoU']:.2f}")
    return out


def _claims(tables: dict[str, Any], log: Any) -> list[dict[str, Any]]:
    import torch

    from ..models import create_model
    from .claims import check_claims, param_counts
    from .resources import count_params

    t0 = time.time()
    params: dict[str, dict[str, int]] = {}
    for label, aux in (("semseg+depth", None), ("semseg+depth, N+E aux", NYUD_NE)):
        params[label] = {}
        for name in ("medusa", "mtinet"):
            with torch.device("meta"):
                params[label][name] = count_params(create_model(name, tasks=list(NYUD_MAIN), aux_tasks=aux,
                                                                dataset="nyud"))
    scaling = param_counts(["medusa", "mtinet", "padnet", "mt_baseline"], max_tasks=6)
    claims = check_claims(tables, params, scaling)
    log(f"claims checked ({time.time() - t0:.0f} s)")
    return claims


def _describe(run: Run) -> str:
    return (f"{run.label}{' (N+E)' if run.ne else ''} on {run.dataset}, tasks={','.join(run.tasks)}"
            + (f", backbone from {run.source}" if run.source else ""))


def _cost_rank(run: Run) -> tuple[int, int]:
    # Longest first, so two parallel jobs finish close together (PAD-Net's stride-4 distillation is the
    # most expensive; N+E variants train four heads).
    order = ["padnet", "single_task", "mtan", "mtinet", "medusa", "mt_baseline"]
    return (0 if run.ne else 1, order.index(run.model) if run.model in order else len(order))


def _default_jobs() -> int:
    import os

    import torch

    if torch.cuda.is_available():
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _worker(run: Run, profile: dict[str, Any], roots: dict[str, Path], out: Path,
            results: dict[str, dict[str, Any]], pretrained_file: str | None) -> dict[str, Any]:
    """Body of a parallel job (a separate process): one torch thread, no progress bar."""
    import torch

    _exit_with_parent()
    torch.set_num_threads(1)
    _quiet_lightning()
    print(f"    start {run.key}: {_describe(run)}", flush=True)
    return execute_run(run, profile, roots, out, results, lambda m: print(f"    {m}", flush=True), progress=False,
                       pretrained_file=pretrained_file)


def _exit_with_parent() -> None:
    """A job whose benchmark process was killed stops too, instead of training on as an orphan."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _run_parallel(ordered: list[Run], jobs: int, profile: dict[str, Any], roots: dict[str, Path], out: Path,
                  results: dict[str, dict[str, Any]], log: Any, finished: Any, pretrained_file: str | None) -> None:
    """Run ``ordered`` on ``jobs`` processes; a UFL run waits until its source run has finished."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending = list(ordered)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures: dict[Any, Run] = {}
        while pending or futures:
            while len(futures) < jobs:
                ready = next((r for r in pending if r.source is None or r.source in results), None)
                if ready is None:
                    break
                pending.remove(ready)
                futures[pool.submit(_worker, ready, profile, roots, out, dict(results), pretrained_file)] = ready
            if not futures:
                missing = sorted({r.source for r in pending if r.source})
                raise ConfigError(f"UFL runs wait for source runs that did not run: {missing}")
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in done:
                finished(futures.pop(fut), fut.result())


def _quiet_lightning() -> None:
    """Keep the benchmark's output to its own progress lines and tables (Lightning's tips and notices off)."""
    import logging
    import warnings

    import lightning  # noqa: F401  (its import sets its loggers to INFO; lower them afterwards)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*exists and is not empty.*", ".*LeafSpec.*", ".*does not have many workers.*",
                    ".*smaller than the logging interval.*", ".*GPU available but not used.*",
                    r".*module\(s\) in eval mode.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _resources(out: Path, log: Any) -> dict[str, Any]:
    try:
        from .resources import write_report as write_resources
    except ImportError:  # pragma: no cover - resources module missing
        return {}
    log("resource report (params and FLOPs, NYUD 480x640)")
    write_resources("nyud", 6, out)
    return _resource_figures(out)


def _resource_figures(out: Path) -> dict[str, Any]:
    """The resource table and plot the report links, where ``out`` has them (None otherwise)."""
    md = out / "resources_nyud.md"
    png = out / "resources_nyud.png"
    return {"resources_md": md.read_text() if md.is_file() else None,
            "resources_png": png.name if png.is_file() else None}


def _predictions(out: Path, results: dict[str, Any], roots: dict[str, Path], profile: dict[str, Any],
                 log: Any) -> list[str]:
    first = (profile.get("seeds") or [profile["seed"]])[0]
    rec = results.get(f"nyud/medusa_ne/s{first}") or results.get(f"nyud/medusa/s{first}")
    n = int(profile.get("predict_images", 0))
    if rec is None or n <= 0:
        return []
    try:
        from .predict import predict_folder_to_panels
    except ImportError:
        return []
    from ..data.formats import read_split

    ids = read_split(roots["nyud"], "nyud", "val")[:n]
    images = [roots["nyud"] / "images" / f"{i}.jpg" for i in ids]
    log(f"example predictions of {rec['key']} on {len(images)} test images")
    return predict_folder_to_panels(rec["best_ckpt"], images, out / "predictions", relative_to=out)
