"""Deployment: ``medusa export`` (ONNX / TorchScript checked against PyTorch), ``medusa configs`` and packaged
configs (``--config medusa:...``), and the CLI's output without developer warnings."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli
from medusa_mtl.cli import main
from medusa_mtl.cli.configs import list_configs, resolve_config, resolve_config_args
from medusa_mtl.engine.export import ExportedModel, check_export, export_model, inference_graph
from medusa_mtl.engine.training import MultiTaskModule
from medusa_mtl.errors import ConfigError


def make_module(arch: str, tasks: str, aux: str | None = None, dataset: str = "nyud") -> MultiTaskModule:
    key = "arch" if "arch" in inspect.signature(MultiTaskModule.__init__).parameters else "model"
    torch.manual_seed(0)
    module = MultiTaskModule(**{key: arch}, tasks=tasks, aux_tasks=aux, dataset=dataset)
    for m in module.modules():  # non-trivial BatchNorm statistics, so a wrong fold would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return module.eval()


def save_ckpt(module: MultiTaskModule, path: Path, **extra: Any) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), **extra}, path)
    return path


@pytest.fixture(scope="module")
def medusa_ne() -> MultiTaskModule:
    return make_module("medusa", "semseg,depth", "semseg,depth,normals,edge")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(medusa_ne: MultiTaskModule, tmp_path: Path, fmt: str) -> None:
    """Main tasks only, one named output each, post-processed; equal to the PyTorch model within the stated
    tolerance on a random input and on an image."""
    pytest.importorskip("onnxruntime") if fmt == "onnx" else None
    graph = inference_graph(medusa_ne)
    assert graph.tasks == ["semseg", "depth"] and set(graph.net.heads) == {"semseg", "depth"}
    path = tmp_path / f"model.{fmt}"
    info = export_model(graph, path, fmt, (64, 64))
    assert path.is_file() and info["bytes"] > 1e6 and not path.with_name(path.name + ".partial").exists()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)
    report = check_export(medusa_ne, path, fmt, (64, 64), ["semseg", "depth"], [image])
    assert report["random"]["semseg"] >= 0.999 and report["random"]["depth"] <= 1e-3
    assert report["latency_ms"] > 0
    run = ExportedModel(path, fmt).run(torch.rand(1, 3, 64, 64))
    assert [o.shape for o in run] == [(1, 64, 64), (1, 1, 64, 64)]
    assert run[0].dtype == np.int64 and run[1].dtype == np.float32 and (run[1] >= 0).all()
    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(path))
        assert [o.name for o in proto.graph.output] == ["semseg", "depth"]
        assert [i.name for i in proto.graph.input] == ["image"]
        assert report["dynamic"]["batch"]
    else:  # outputs by task name; another size is refused (a traced graph would answer at the traced size)
        scripted = torch.jit.load(str(path))
        outputs = scripted(torch.rand(2, 3, 64, 64))
        assert list(outputs) == ["semseg", "depth"] and outputs["depth"].shape == (2, 1, 64, 64)
        assert report["dynamic"]["batch"]
    with pytest.raises(Exception, match="(?i)dimension|shape|invalid"):  # the size is fixed at export
        ExportedModel(path, fmt).run(torch.rand(1, 3, 96, 96))
    if fmt == "torchscript":
        with pytest.raises(Exception, match=r"exported for images of float32 \[B, 3, 64, 64\]"):
            ExportedModel(path, fmt).run(torch.rand(1, 3, 64, 96))


def test_export_cli_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = make_module("mt_baseline", "semseg,depth")
    ckpt = save_ckpt(module, tmp_path / "m.ckpt")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(images / "a.png")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(images / "b.jpg")  # at the export size: not resized
    out = tmp_path / "m.pt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out), "--size", "64x64",
                     "--tasks", "depth", "--check-images", str(images)]) == 0
    # the project's own code raised torch's "NumPy array is not writable" warning at the user
    assert not [w for w in caught if "not writable" in str(w.message)]
    text = capsys.readouterr().out
    assert "outputs: depth" in text and "latency" in text and "MiB" in text
    assert [o.shape for o in ExportedModel(out, "torchscript").run(torch.rand(1, 3, 64, 64))] == [(1, 1, 64, 64)]
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out), "--size", "64x64",
                 "--tasks", "normals"]) == 2
    assert "not main tasks" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out), "--size", "64x64",
                 "--tasks", "sal"]) == 2
    assert "'sal' is not defined for dataset 'nyud'" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out), "--size", "60x64"]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "the extension names another format than --format torchscript" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_export_that_fails_its_check_leaves_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The file takes its name only after the check: a corrupt check image or a failed comparison exits 2 and
    leaves neither the export nor its temporary file."""
    import medusa_mtl.engine.export as export

    ckpt = save_ckpt(make_module("mt_baseline", "semseg,depth"), tmp_path / "m.ckpt")
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "m.pt"
    base = ["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out), "--size", "64x64"]
    assert main([*base, "--check-images", str(images)]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert main([*base, "--check-images", str(tmp_path / "nowhere")]) == 2
    assert "--check-images" in capsys.readouterr().err
    monkeypatch.setattr(export, "FLOAT_TOLERANCE", -1.0)  # every float output now "differs"
    assert main(base) == 2
    assert "export check: depth differs" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "m.ckpt"]


# -- packaged configs -------------------------------------------------------------------------------------------

def test_packaged_configs_are_listed_and_resolved(capsys: pytest.CaptureFixture[str]) -> None:
    names = list_configs()
    for expected in ("model/medusa.yaml", "data/synthetic_nyud.yaml", "profile/quick.yaml", "tasks/nyud_ne.yaml",
                     "benchmark/standard.yaml"):
        assert expected in names
    assert resolve_config("medusa:model/medusa").read_text() == resolve_config("medusa:model/medusa.yaml").read_text()
    assert resolve_config("some/file.yaml") == Path("some/file.yaml")
    with pytest.raises(ConfigError, match="no packaged config"):
        resolve_config("medusa:model/nope.yaml")
    with pytest.raises(ConfigError, match="no packaged config"):
        resolve_config("medusa:../../etc/passwd")
    args = resolve_config_args(["fit", "--config", "medusa:model/medusa.yaml", "--config=medusa:profile/quick.yaml",
                                "--trainer.max_epochs", "1"])
    assert Path(args[2]).is_file() and args[3].startswith("--config=/") and args[4:] == ["--trainer.max_epochs", "1"]
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out
    assert "medusa:model/medusa.yaml" in listing
    # the benchmark profiles are listed as what they are (--profile names), not as --config files
    configs, profiles = listing.split("benchmark profiles")
    assert "benchmark/" not in configs and "--profile" in profiles and "\n  standard\n" in profiles
    assert main(["fit", "--config", "medusa:benchmark/standard.yaml"]) == 2
    assert "medusa benchmark --profile standard" in capsys.readouterr().err
    assert main(["configs", "model/medusa.yaml"]) == 0
    assert "medusa" in capsys.readouterr().out
    assert main(["configs", "model/nope.yaml"]) == 2
    err = capsys.readouterr().err  # `medusa configs NAME` has no --config option: the error names the argument
    assert "medusa configs: error: model/nope.yaml: no packaged config" in err and "--config" not in err, err


@pytest.mark.parametrize("form", [["-c", "medusa:data/synthetic_nyud.yaml"], ["-c=medusa:data/synthetic_nyud.yaml"],
                                  ["-cmedusa:data/synthetic_nyud.yaml"], ["--config=medusa:data/synthetic_nyud"]])
def test_packaged_config_through_the_short_alias(form: list[str]) -> None:
    """``-c`` is the documented alias of ``--config`` (``medusa fit --help``): it resolves ``medusa:`` names too
    (it was handed on as a file path, 'File does not exist: .../medusa:data/...')."""
    packaged = str(resolve_config("medusa:data/synthetic_nyud.yaml"))
    args = resolve_config_args(["fit", *form, "--trainer.max_epochs", "1"])
    assert packaged in args[-3] and args[-2:] == ["--trainer.max_epochs", "1"], args
    rc, out, err = run_cli(["fit", *form, "--print_config"])
    assert rc == 0, err
    assert "synthetic" in out

# -- a wheel installed into a fresh virtual environment ----------------------------------------------------------

def test_wheel_in_fresh_venv_has_configs_and_commands(tmp_path: Path) -> None:
    """``pip install`` of the built wheel (not editable, outside the clone) ships the configs: ``medusa configs``
    lists them and ``medusa fit --config medusa:...`` trains from them. The fresh venv borrows the test venv's
    installed dependencies through a .pth path (no download); medusa_mtl itself comes from the wheel."""
    import shutil
    import site
    import subprocess
    import sys
    import sysconfig

    repo = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # build from a copy: the build leaves build/ folders behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(repo / name, source / name)
    shutil.copytree(repo / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("medusa_mtl-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    Path(purelib, "borrowed_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"  # not the clone: nothing can come from a configs/ folder next to the cwd
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}

    def medusa(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "medusa"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    where = subprocess.run([str(python), "-c", "import medusa_mtl; print(medusa_mtl.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(purelib), where
    listing = medusa("configs")
    assert listing.returncode == 0 and "medusa:model/medusa.yaml" in listing.stdout, listing.stderr
    assert "--profile" in listing.stdout and "\n  standard\n" in listing.stdout
    assert Path(medusa("configs", "model/medusa.yaml", "--path").stdout.strip()).is_relative_to(purelib)
    synth = medusa("data", "synth", "--dataset", "nyud", "--root", "NYUD_MT", "--num-train", "4", "--num-val", "2",
                   "--size", "64x64")
    assert synth.returncode == 0, synth.stderr[-2000:]
    fit = medusa("fit", "--config", "medusa:data/synthetic_nyud.yaml", "--config", "medusa:model/mt_baseline.yaml",
                 "--data.root", "NYUD_MT", "--data.size", "[64,64]", "--data.num_workers", "0",
                 "--model.backbone", "test_efficientnet", "--trainer.fast_dev_run", "true",
                 "--trainer.default_root_dir", "run")
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "Warning" not in fit.stderr and "deprecated" not in fit.stderr, fit.stderr[-3000:]


def test_verbose_switch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--verbose`` anywhere (or MEDUSA_VERBOSE=1) keeps the libraries' warnings; it is not passed on."""
    import warnings

    from medusa_mtl.cli import _split_verbose, quiet_library_output

    assert _split_verbose(["fit", "--verbose", "--config", "x"]) == (["fit", "--config", "x"], True)
    monkeypatch.delenv("MEDUSA_VERBOSE", raising=False)
    assert _split_verbose(["fit"]) == (["fit"], False)
    monkeypatch.setenv("MEDUSA_VERBOSE", "1")
    assert _split_verbose(["fit"]) == (["fit"], True)
    assert main(["--verbose", "configs"]) == 0 and "medusa:model/medusa.yaml" in capsys.readouterr().out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_output()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", UserWarning, stacklevel=1)
        warnings.warn("something of ours", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something of ours"]
