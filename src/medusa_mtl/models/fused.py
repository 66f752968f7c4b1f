"""Fast forms of the building blocks' computations: the same function up to float rounding, with the same
parameters and state-dict keys. The architecture files hold the literal computation (the reference the tests
compare against) and call into this module when their ``fused`` switch is on (the default;
:func:`medusa_mtl.models.optimize.set_fused` turns every switch of a model on or off in one call).

Multi-scale fusion without the concatenation (:func:`multiscale_conv1x1`): HRHead's first layer is a Conv1x1 on
``concat_s(up(f_s))``. A 1x1 convolution is linear per pixel and bilinear upsampling is linear per channel with
the same spatial weights for every channel, so the two commute; with ``W = [W_0 | W_1 | ...]`` split along its
input channels,

    Conv1x1(concat_s(a_s * up(f_s))) = sum_s a_s * up(W_s f_s) + b

for per-pixel scalar weights ``a_s`` (1 for HRHead, the MSA softmax for Medusa). ``W_s f_s`` can therefore be
evaluated at scale ``s``'s own resolution (4^s times fewer pixels) and only its result upsampled. Computing a
scale at low resolution saves ``C_s * C_out * (1 - 4^-s)`` MACs per output pixel but upsamples ``C_out``
instead of ``C_s`` channels; :func:`low_resolution_scales` decides per scale with the cost model
:data:`UPSAMPLE_COST_MACS`. In eval mode a BatchNorm is a fixed affine map and folds into the conv before it
(:func:`fold_batchnorm_into_conv`); for CPU inference the whole head runs in cache-sized bands of rows
(:func:`fused_head_in_row_bands`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..resize import is_channels_last, upsample_to

#: Cost model of :func:`low_resolution_scales`: producing one upsampled channel at one output pixel, plus the
#: elementwise pass that consumes it, costs about as much as this many multiply-accumulates of a 1x1 conv
#: (measured on CPU, fp32, one thread: bilinear upsampling ~1.4 ns and a fused multiply-add ~0.4 ns per
#: element vs ~0.03 ns per MAC of a 270->270 Conv1x1). Only the speed depends on it, never the result.
UPSAMPLE_COST_MACS = 60.0


def low_resolution_scales(channels: Sequence[int], out_channels: int, sizes: Sequence[Sequence[int]],
                          upsample_cost: float | None = None) -> list[bool]:
    """For each scale, whether :func:`multiscale_conv1x1` should convolve it at its own (low) resolution.

    Convolving scale ``s`` first saves ``C_s * C_out * (1 - 1/r_s)`` MACs per output pixel (``r_s`` = pixel
    ratio to scale 0) and costs ``C_out - C_s`` extra upsampled channels; low resolution is chosen when the
    saving exceeds ``upsample_cost`` (default :data:`UPSAMPLE_COST_MACS`) MACs per extra channel. Scale 0 is
    never "low resolution". HRNet-18 (18, 36, 72, 144 -> 270): ``[False, False, True, True]``.
    """
    cost = UPSAMPLE_COST_MACS if upsample_cost is None else float(upsample_cost)
    h0, w0 = (int(v) for v in sizes[0][-2:])
    plan = []
    for c, size in zip(channels, sizes):
        h, w = (int(v) for v in size[-2:])
        ratio = (h0 * w0) / max(h * w, 1)
        saved = c * out_channels * (1.0 - 1.0 / ratio) if ratio > 1 else 0.0
        plan.append(ratio > 1 and saved > cost * (out_channels - c))
    return plan


#: :func:`upsample_separable` is used inside :func:`multiscale_conv1x1` (CPU only) when its two matrix products
#: cost at most this many multiply-accumulates per output element (CPU, one thread, 270 channels: 15x20 ->
#: 120x160 (17.5 MACs) 5.2 ms vs 7.7 ms for ``F.interpolate``; 30x40 -> 120x160 (40 MACs) about equal;
#: batch 8, 8x10 -> 32x40 (10.5 MACs) 1.3 ms vs 9.2 ms).
SEPARABLE_UPSAMPLE_MAX_MACS = 32.0

_INTERPOLATION_MATRICES: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}


def interpolation_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``[n_out, n_in]`` matrix of 1-D linear interpolation (align_corners=False) from ``n_in`` to ``n_out``
    samples: exactly the per-axis weights of PyTorch's bilinear upsampling (2 non-zeros per row)."""
    key = (int(n_in), int(n_out), dtype, torch.device(device))
    mat = _INTERPOLATION_MATRICES.get(key)
    if mat is None:
        with torch.inference_mode(False), torch.no_grad():  # a plain constant, usable under autograd later
            eye = torch.eye(n_in, dtype=torch.float64)[None]
            mat = F.interpolate(eye, size=int(n_out), mode="linear", align_corners=False)[0].t()
            mat = mat.to(dtype=dtype, device=device).contiguous()
        if not torch.compiler.is_compiling():
            _INTERPOLATION_MATRICES[key] = mat
    return mat


def separable_upsample_macs(in_size: Sequence[int], out_size: Sequence[int]) -> float:
    """Multiply-accumulates per output element of :func:`upsample_separable` (``w*h/H + h``)."""
    h, w = (int(v) for v in in_size[-2:])
    big_h = int(out_size[-2])
    return w * h / big_h + h


def upsample_separable(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) as two small matrix products, ``A_h @ x @ A_w^T``.

    The same linear map as :func:`upsample_to` (equal up to float rounding). On the CPU, PyTorch's bilinear
    kernel converts many-channel NCHW maps to NHWC and back, which costs more than these products when the
    input is small (see :data:`SEPARABLE_UPSAMPLE_MAX_MACS`).
    """
    h, w = (int(v) for v in x.shape[-2:])
    big_h, big_w = (int(v) for v in size)
    a_h = interpolation_matrix(h, big_h, x.dtype, x.device)
    a_w = interpolation_matrix(w, big_w, x.dtype, x.device)
    return torch.matmul(a_h, torch.matmul(x, a_w.t()))


def _dispatch_mode_active() -> bool:
    """Whether a Python dispatch mode (``FlopCounterMode``, fake tensors while tracing, ...) is active."""
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        return _get_current_dispatch_mode() is not None
    except ImportError:  # pragma: no cover - private API moved
        return True


def _upsample_projection(y: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Upsample a low-resolution projection inside :func:`multiscale_conv1x1` with the cheaper kernel.

    The matrix-product form is a plain-CPU execution detail: under a dispatch mode (FLOP counting, tracing)
    the bilinear op is used, so FLOP counts (conv/matmul only) do not depend on the device.
    """
    if tuple(y.shape[-2:]) == tuple(size):
        return y
    if (y.device.type == "cpu" and y.is_contiguous()
            and separable_upsample_macs(y.shape, size) <= SEPARABLE_UPSAMPLE_MAX_MACS
            and not _dispatch_mode_active()):
        return upsample_separable(y, size)
    return upsample_to(y, size)


def multiscale_conv1x1(features: Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None = None,
                       scale_weights: torch.Tensor | None = None,
                       low_res: Sequence[bool] | None = None) -> torch.Tensor:
    """``conv2d(concat_s(a_s * up(f_s)), weight, bias)`` at scale 0's resolution, without the concatenation.

    Args:
        features: maps ``[B, C_s, H_s, W_s]``, fine to coarse; scale 0 sets the output size.
        weight: the Conv1x1 weight ``[C_out, sum C_s, 1, 1]`` (input channels in scale order).
        bias: ``[C_out]`` or ``None``.
        scale_weights: optional per-pixel weights ``[B, n_scales, H_0, W_0]`` (``a_s``); ``None`` means 1.
        low_res: per scale, convolve before upsampling (see the module docstring); default
            :func:`low_resolution_scales`. The result is the same either way up to float rounding.

    Scales computed at full resolution are weighted, concatenated and convolved together with the matching
    columns of ``weight``; every low-resolution scale adds ``a_s * up(W_s f_s)``.
    """
    if weight.dim() != 4 or weight.shape[-2:] != (1, 1):
        raise ValueError(f"multiscale_conv1x1 needs a 1x1 conv weight, got shape {tuple(weight.shape)}")
    chans = [int(f.shape[1]) for f in features]
    if int(weight.shape[1]) != sum(chans):
        raise ValueError(f"weight has {weight.shape[1]} input channels, the scales have {chans} (sum {sum(chans)})")
    size = tuple(features[0].shape[-2:])
    if low_res is None:
        low_res = low_resolution_scales(chans, int(weight.shape[0]), [f.shape[-2:] for f in features])
    offsets = [0]
    for c in chans:
        offsets.append(offsets[-1] + c)

    def columns(s: int) -> torch.Tensor:
        return weight[:, offsets[s] : offsets[s + 1]]

    def weighted(s: int, x: torch.Tensor) -> torch.Tensor:
        return x if scale_weights is None else x * scale_weights[:, s : s + 1]

    high = [s for s in range(len(features)) if not low_res[s]]
    out: torch.Tensor | None = None
    if high:
        parts = [weighted(s, upsample_to(features[s], size)) for s in high]
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if high == list(range(high[0], high[-1] + 1)):
            w_high = weight[:, offsets[high[0]] : offsets[high[-1] + 1]]
        else:
            w_high = torch.cat([columns(s) for s in high], dim=1)
        out = F.conv2d(x, w_high, bias)
    for s in range(len(features)):
        if not low_res[s]:
            continue
        y = _upsample_projection(F.conv2d(features[s], columns(s)), size)
        if out is None:
            out = weighted(s, y)
        elif scale_weights is None:
            out = out.add_(y)  # in place: no autograd op needs the running sum itself
        else:
            out = out.addcmul_(y, scale_weights[:, s : s + 1])
    assert out is not None
    if not high and bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


#: :func:`fused_head_in_row_bands` processes bands of about this many bytes of the wide (``sum C_s``-channel)
#: intermediate map per image: small enough to stay in a CPU core's cache between the passes over it.
ROW_BAND_BYTES = 1 << 20


def row_band_height(channels: int, width: int, itemsize: int = 4) -> int:
    """Rows per band of :func:`fused_head_in_row_bands` (at least 4): ``ROW_BAND_BYTES`` over one image row's
    bytes."""
    return max(4, ROW_BAND_BYTES // max(1, channels * width * itemsize))


@functools.lru_cache(maxsize=4096)
def band_source_rows(n_in: int, n_out: int, r0: int, r1: int) -> tuple[int, int]:
    """The source rows ``[c0, c1)`` that output rows ``r0:r1`` of a 1-D linear upsampling from ``n_in`` to
    ``n_out`` samples read (the non-zero columns of those rows of :func:`interpolation_matrix`)."""
    used = torch.nonzero(interpolation_matrix(n_in, n_out, torch.float64)[r0:r1].abs().sum(dim=0)).flatten()
    return int(used[0]), int(used[-1]) + 1


def fused_head_in_row_bands(features: Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None,
                            out_weight: torch.Tensor, out_bias: torch.Tensor | None,
                            scale_weights: torch.Tensor | None = None, rows: int | None = None,
                            low_res: Sequence[bool] | None = None) -> torch.Tensor:
    """``conv1x1(relu(multiscale_conv1x1(features, weight, bias, scale_weights)), out_weight, out_bias)``, one
    band of output rows at a time (the inference form of HRHead's layers with the BatchNorm folded in).

    The wide intermediate (``C_out`` = 270 channels at stride 4 for HRNet-18, 20 MB for one 480x640 image) is
    never materialised whole: each band is convolved, gets its low-resolution scales added, is rectified and
    projected while it is in cache. Row ``i`` of a bilinear upsampling reads source rows through row ``i`` of the
    1-D interpolation matrix ``A_h`` (:func:`interpolation_matrix`), so a band of ``up(W_s f_s)`` is
    ``A_h[band] @ (W_s f_s) @ A_w^T`` restricted to the few source rows the band touches -- the same linear map
    as :func:`multiscale_conv1x1` with its low-resolution plan ``low_res``; the result equals the unbanded
    computation up to float rounding. Scale 0 must be at full resolution (it always is in the default plan).
    """
    chans = [int(f.shape[1]) for f in features]
    n_out = int(weight.shape[0])
    if low_res is None:
        low_res = low_resolution_scales(chans, n_out, [f.shape[-2:] for f in features])
    if low_res[0]:
        raise ValueError("fused_head_in_row_bands needs scale 0 at full resolution")
    batch, (height, width) = int(features[0].shape[0]), (int(v) for v in features[0].shape[-2:])
    size = (height, width)
    rows = row_band_height(n_out, width, weight.element_size()) if rows is None else int(rows)
    offsets = [0]
    for c in chans:
        offsets.append(offsets[-1] + c)
    high = [s for s in range(len(features)) if not low_res[s]]
    parts = [upsample_to(features[s], size) for s in high]
    if scale_weights is not None:
        parts = [p * scale_weights[:, s : s + 1] for p, s in zip(parts, high)]
    x_high = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    w_high = torch.cat([weight[:, offsets[s] : offsets[s + 1]] for s in high], dim=1)
    low = []  # (scale, W_s f_s @ A_w^T  [B, C_out, h_s, W0], A_h [H0, h_s])
    for s in range(len(features)):
        if low_res[s]:
            y = F.conv2d(features[s], weight[:, offsets[s] : offsets[s + 1]])
            a_w = interpolation_matrix(y.shape[-1], width, y.dtype, y.device)
            a_h = interpolation_matrix(y.shape[-2], height, y.dtype, y.device)
            low.append((s, torch.matmul(y, a_w.t()), a_h))
    out = torch.empty(batch, int(out_weight.shape[0]), height, width, dtype=x_high.dtype, device=x_high.device)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        taps = []  # per low-resolution scale: the band's rows of A_h, cut to the source rows they use
        for s, z, a_h in low:
            c0, c1 = band_source_rows(int(a_h.shape[1]), height, r0, r1)
            taps.append((s, z[:, :, c0:c1], a_h[r0:r1, c0:c1]))
        for b in range(batch):  # one image at a time: the band of one image is what fits in cache
            band = F.conv2d(x_high[b : b + 1, :, r0:r1], w_high, bias)
            for s, z, a_band in taps:
                part = torch.matmul(a_band, z[b : b + 1])
                if scale_weights is None:
                    band.add_(part)
                else:
                    band.addcmul_(part, scale_weights[b : b + 1, s : s + 1, r0:r1])
            out[b : b + 1, :, r0:r1] = F.conv2d(band.relu_(), out_weight, out_bias)
    return out


def eval_batchnorm_fold(bn: nn.BatchNorm2d) -> bool:
    """Whether ``bn`` normalises with running statistics (eval mode), i.e. is a fixed per-channel affine map
    that can be folded into the preceding convolution."""
    return not bn.training and bn.running_mean is not None and bn.running_var is not None


def fold_batchnorm_into_conv(weight: torch.Tensor, bias: torch.Tensor | None,
                             bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` for an eval-mode ``bn`` (see :func:`eval_batchnorm_fold`).

    ``weight' = weight * gamma / sqrt(var + eps)`` and ``bias' = bn(bias)``: the folded bias is the BatchNorm
    applied to the conv's bias, computed by calling ``bn`` on it (so forward hooks on ``bn``, e.g. the
    used-parameter accounting of :mod:`medusa_mtl.reports.resources`, see the BatchNorm as used).
    """
    assert bn.running_var is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    # clone: under no_grad a view of a parameter still "requires grad" without a grad_fn, which module
    # trackers (FlopCounterMode's) reject as a module input
    new_bias = bn(bias.reshape(1, -1, 1, 1).clone()).reshape(-1)
    return weight * scale.to(weight.dtype).reshape(-1, 1, 1, 1), new_bias


class MultiScaleConv1x1(nn.Conv2d):
    """A ``Conv2d`` (1x1) that also accepts a list of multi-scale maps: ``conv(concat_s(a_s * up(f_s)))``.

    ``forward(x)`` with a tensor is the ordinary convolution; ``forward(features, scale_weights, bn)`` with a
    sequence evaluates the convolution of the (weighted) concatenation through :func:`multiscale_conv1x1`,
    with an eval-mode BatchNorm ``bn`` that follows it folded in (:func:`fold_batchnorm_into_conv`).
    Parameter names and shapes are those of ``nn.Conv2d``, so state dicts of plain convs load unchanged.
    """

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor],  # type: ignore[override]
                scale_weights: torch.Tensor | None = None, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            if scale_weights is not None or bn is not None:
                raise ValueError("scale_weights and bn need a sequence of multi-scale maps")
            return super().forward(x)
        weight, bias = (self.weight, self.bias) if bn is None else fold_batchnorm_into_conv(self.weight, self.bias, bn)
        return multiscale_conv1x1(x, weight, bias, scale_weights)


def _row_band_plan(features: Sequence[torch.Tensor], rest: Sequence[nn.Module]) -> list[bool] | None:
    """Whether the inference path :func:`fused_head_in_row_bands` applies: no autograd, plain CPU execution
    (no FLOP counter or tracer watching), maps not in channels_last and taller than one band, and the layers
    after the folded BatchNorm exactly ``ReLU -> Conv1x1``. Returns the low-resolution plan if so, else
    ``None``."""
    if torch.is_grad_enabled() or len(rest) != 3 or type(rest[1]) is not nn.ReLU:
        return None
    last = rest[2]
    if type(last) is not nn.Conv2d or last.kernel_size != (1, 1) or last.stride != (1, 1) or last.groups != 1:
        return None
    f0 = features[0]
    channels_last = any(is_channels_last(f) for f in features)  # the NHWC regime keeps the unbanded path
    if f0.device.type != "cpu" or channels_last or _dispatch_mode_active():
        return None
    plan = low_resolution_scales([int(f.shape[1]) for f in features], int(last.in_channels),
                                 [f.shape[-2:] for f in features])
    rows = row_band_height(int(last.in_channels), int(f0.shape[-1]), f0.element_size())
    return plan if not plan[0] and int(f0.shape[-2]) > rows else None


def hrhead_forward(head: nn.Module, features: Sequence[torch.Tensor],
                   scale_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The fast form of :meth:`HRHead.forward <medusa_mtl.models.blocks.HRHead.forward>` (same outputs up to
    float rounding): the first Conv1x1 evaluated per scale without the concatenation
    (:func:`multiscale_conv1x1`), an eval-mode BatchNorm folded into it, and on the CPU in inference the whole
    head in bands of rows (:func:`fused_head_in_row_bands`)."""
    first, *rest = head.last_layer
    bn = rest[0] if rest and isinstance(rest[0], nn.BatchNorm2d) and eval_batchnorm_fold(rest[0]) else None
    plan = _row_band_plan(features, rest) if bn is not None else None
    if plan is not None:
        weight, bias = fold_batchnorm_into_conv(first.weight, first.bias, bn)
        last = rest[2]
        return fused_head_in_row_bands(features, weight, bias, last.weight, last.bias, scale_weights,
                                       low_res=plan)
    if isinstance(first, MultiScaleConv1x1):
        x = first(features, scale_weights, bn)
    else:  # e.g. a module pickled before MultiScaleConv1x1 existed
        weight, bias = (first.weight, first.bias) if bn is None else fold_batchnorm_into_conv(
            first.weight, first.bias, bn)
        x = multiscale_conv1x1(features, weight, bias, scale_weights)
    for layer in rest[1:] if bn is not None else rest:
        x = layer(x)
    return x
