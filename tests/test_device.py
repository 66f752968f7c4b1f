"""Device tests (marker ``device``): the paths that only a GPU exercises, run on ``MEDUSA_TEST_DEVICE``.

Default device: CUDA when present; on a machine without it the tests are skipped, and
``benchmarks/gpu_check.sh --device cpu --smoke`` (run by tests/test_gpu_check.py) runs a subset of them on the
CPU so that they cannot rot. On a GPU: every model's forward and backward in fp32 and bf16 autocast, fused vs
literal equality, a checkpoint saved from the device and loaded on the CPU.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from medusa_mtl.engine.checkpoints import atomic_torch_save, load_checkpoint
from medusa_mtl.models import create_model, list_models
from medusa_mtl.models.base import DEEP_SUPERVISION
from medusa_mtl.models.optimize import set_fused

DEVICE = os.environ.get("MEDUSA_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
SMOKE = os.environ.get("MEDUSA_TEST_SMOKE") == "1"
pytestmark = [
    pytest.mark.device,
    pytest.mark.skipif(not DEVICE, reason="no CUDA device (MEDUSA_TEST_DEVICE=cpu runs these on the CPU)"),
]
MODELS = ["mt_baseline", "medusa"] if SMOKE else list_models()
SIZE = 64 if SMOKE or DEVICE == "cpu" else 128
AUX = ["semseg", "depth", "normals", "edge"]


@pytest.fixture(autouse=True)
def _exact_float32() -> object:
    """No TF32 on CUDA: the equality tests compare float32 computations."""
    if DEVICE.startswith("cuda"):
        before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        yield
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    else:
        yield


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, tasks=["semseg", "depth"], aux_tasks=AUX, dataset="nyud").to(DEVICE)


def _flat(outputs: dict) -> list[torch.Tensor]:
    flat = [v for k, v in outputs.items() if k != DEEP_SUPERVISION]
    for per_scale in outputs.get(DEEP_SUPERVISION, {}).values():
        flat += list(per_scale.values())
    return flat


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_on_device(name: str, dtype: str) -> None:
    model = _model(name).train()
    x = torch.randn(2, 3, SIZE, SIZE, device=DEVICE)
    with torch.autocast(device_type=torch.device(DEVICE).type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
        outputs = model(x)
        loss = sum(o.float().mean() for o in _flat(outputs))
    loss.backward()
    assert torch.isfinite(loss)
    assert outputs["semseg"].shape[-2:] == (SIZE, SIZE) and outputs["semseg"].device.type == torch.device(DEVICE).type
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", MODELS)
def test_fused_equals_literal_on_device(name: str) -> None:
    model = _model(name).eval()
    literal = set_fused(copy.deepcopy(model), False)
    x = torch.randn(2, 3, SIZE, SIZE, device=DEVICE)
    with torch.no_grad():
        a, b = model(x), literal(x)
    assert a.keys() == b.keys()
    for t in a:
        # relative to the outputs' scale: an untrained model's logits reach ~500, where float32 rounding of a
        # different summation order is ~1e-4 absolute (oneDNN's AVX-512/AMX kernels: 2.4e-4 = 5e-7 of the largest)
        x, y = a[t].double(), b[t].double()
        assert float((x - y).norm() / y.norm()) <= 1e-5, t
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * float(y.abs().max()), msg=t)


def test_checkpoint_saved_on_device_loads_on_cpu(tmp_path: Path) -> None:
    model = _model("medusa")
    path = tmp_path / "on_device.ckpt"
    atomic_torch_save({"state_dict": model.state_dict()}, path)
    loaded = load_checkpoint(path, map_location="cpu")["state_dict"]
    for k, v in model.state_dict().items():
        assert loaded[k].device.type == "cpu"
        assert torch.equal(loaded[k], v.cpu()), k
    cpu_model = create_model("medusa", tasks=["semseg", "depth"], aux_tasks=AUX, dataset="nyud")
    cpu_model.load_state_dict(loaded)
