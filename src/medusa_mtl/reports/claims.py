"""The paper's claims, checked against a benchmark's measured numbers: verdicts with seed-based intervals.

Each claim gets "supported", "contradicted" or "not resolved at this noise", decided by a 95 % interval of a
difference of means over seeds (Welch's t interval). Nothing here knows what the answer should be: the
verdict follows from the interval and the stated rule, whatever it says.

Also here: the "is every task learned?" check against the trivial (constant) predictor.

Example:
    >>> iv = diff_interval([1.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    >>> round(iv.diff, 2), iv.lo < iv.diff < iv.hi
    (1.5, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
UNRESOLVED = "not resolved at this noise"

# "Every main task is learned": a model must beat the constant predictor by these factors (issue #10).
LEARNED_CRITERIA: dict[str, tuple[str, float]] = {
    "semseg": ("mIoU", 8.0),  # mIoU >= 8 x trivial
    "human_parts": ("mIoU", 2.0),
    "sal": ("mIoU", 1.5),
    "depth": ("rmse", 0.5),  # RMSE <= 0.5 x trivial
}


@dataclass(frozen=True)
class Interval:
    """Difference of means ``a - b`` with a two-sided confidence interval ``[lo, hi]`` (None: undefined)."""

    diff: float
    lo: float | None
    hi: float | None
    n_a: int
    n_b: int
    note: str = ""

    def text(self, digits: int = 2) -> str:
        if self.lo is None or self.hi is None:
            return f"{self.diff:+.{digits}f} (no interval: {self.note or 'one seed'})"
        extra = f"; {self.note}" if self.note else ""
        return f"{self.diff:+.{digits}f} [95 % CI {self.lo:+.{digits}f}, {self.hi:+.{digits}f}]{extra}"


def _mean_var(x: Sequence[float]) -> tuple[float, float | None]:
    m = sum(x) / len(x)
    if len(x) < 2:
        return m, None
    return m, sum((v - m) ** 2 for v in x) / (len(x) - 1)


def diff_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Welch's t interval for ``mean(a) - mean(b)`` over seeds.

    When one side has a single seed its variance is taken equal to the other side's (stated in the note);
    with one seed on both sides, or no spread at all between seeds, there is no interval (not resolved).
    """
    from scipy import stats

    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("diff_interval needs at least one value on each side")
    ma, va = _mean_var(a)
    mb, vb = _mean_var(b)
    diff = ma - mb
    note = ""
    if va is None and vb is None:
        return Interval(diff, None, None, len(a), len(b), "one seed on both sides")
    if va is None or vb is None:
        va = vb if va is None else va
        vb = va if vb is None else vb
        note = "one side has one seed: its variance taken equal to the other side's"
        df = max(max(len(a), len(b)) - 1, 1)
    se2 = va / len(a) + vb / len(b)
    if not note:
        num = se2**2
        den = (va / len(a)) ** 2 / max(len(a) - 1, 1) + (vb / len(b)) ** 2 / max(len(b) - 1, 1)
        df = num / den if den > 0 else max(len(a) + len(b) - 2, 1)
    se = math.sqrt(se2)
    if se == 0:  # seeds that agree to the last bit estimate no spread: a point "interval" would decide anything
        return Interval(diff, None, None, len(a), len(b), "no seed-to-seed spread to estimate an interval from")
    t = float(stats.t.ppf(0.5 + level / 2, df))
    return Interval(diff, diff - t * se, diff + t * se, len(a), len(b), note)


def verdict_greater(iv: Interval, margin: float = 0.0) -> str:
    """The claim "a - b > margin": supported if the whole interval is above it, contradicted if below."""
    if iv.lo is None or iv.hi is None:
        return UNRESOLVED
    if iv.lo > margin:
        return SUPPORTED
    if iv.hi < margin:
        return CONTRADICTED
    return UNRESOLVED


def verdict_less(iv: Interval, margin: float = 0.0) -> str:
    """The claim "a - b < margin"."""
    if iv.lo is None or iv.hi is None:
        return UNRESOLVED
    if iv.hi < margin:
        return SUPPORTED
    if iv.lo > margin:
        return CONTRADICTED
    return UNRESOLVED


def combine(verdicts: Sequence[str]) -> str:
    """All parts of a claim: contradicted if any part is, supported if all are, else not resolved."""
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return UNRESOLVED


def learned(task: str, value: float, trivial: float) -> tuple[bool, float]:
    """(passes, ratio to the trivial predictor) for one task's Δm metric (:data:`LEARNED_CRITERIA`)."""
    _, factor = LEARNED_CRITERIA[task]
    ratio = value / trivial if trivial else math.inf
    ok = ratio <= factor if task == "depth" else ratio >= factor
    return ok, ratio


def growth(counts: Sequence[float]) -> dict[str, Any]:
    """How a count grows with T = 1..n: increments, second differences and a label.

    "linear" when every second difference is below 0.5 % of the mean increment; "quadratic" when they are all
    positive beyond that and each within 5 % of their mean (constant second differences, at least two of them: the
    first may differ a little, e.g. MTI-Net has no distillation at T = 1); "superlinear" when they are all positive
    but not shown constant; else "irregular".
    """
    inc = [b - a for a, b in zip(counts, counts[1:], strict=False)]
    second = [b - a for a, b in zip(inc, inc[1:], strict=False)]
    mean_inc = sum(inc) / len(inc) if inc else 0.0
    tol = 0.005 * abs(mean_inc)
    mean_second = sum(second) / len(second) if second else 0.0
    if all(abs(s) <= tol for s in second):
        label = "linear"
    elif all(s > tol for s in second):
        constant = len(second) >= 2 and all(abs(s - mean_second) <= 0.05 * mean_second for s in second)
        label = "quadratic" if constant else "superlinear"  # one second difference cannot show it is constant
    else:
        label = "irregular"
    return {"counts": list(counts), "increments": inc, "second_differences": second, "label": label}


def param_counts(models: Sequence[str], max_tasks: int = 6, dataset: str = "nyud",
                 task: str = "semseg") -> dict[str, list[int]]:
    """Parameter counts of each model for T = 1..max_tasks copies of one task (so that every added task costs
    the same where the growth is linear), built on the meta device."""
    import torch

    from ..models import create_model
    from .resources import count_params, sweep_tasks

    out: dict[str, list[int]] = {}
    for name in models:
        counts = []
        for t in range(1, max_tasks + 1):
            with sweep_tasks(dataset, t, cycle=[task]) as tasks, torch.device("meta"):
                counts.append(count_params(create_model(name, tasks=tasks, dataset=dataset)))
        out[name] = counts
    return out


def _vals(row: dict[str, Any] | None, key: str) -> list[float]:
    return [float(v) for v in (row or {}).get(key) or [] if v is not None]


def _claim(name: str, verdict: str, evidence: str, rule: str, **numbers: Any) -> dict[str, Any]:
    return {"claim": name, "verdict": verdict, "evidence": evidence, "rule": rule, **numbers}


def check_claims(tables: dict[str, Any], params: dict[str, dict[str, int]] | None = None,
                 scaling: dict[str, list[int]] | None = None) -> list[dict[str, Any]]:
    """Verdicts on the paper's five claims from a benchmark's tables (rows with per-seed values).

    Args:
        tables: :func:`medusa_mtl.reports.benchmark.build_tables` output.
        params: ``{setting: {model: params}}`` for the Medusa / MTI-Net parameter claim.
        scaling: ``{model: [params for T = 1..n]}`` for the linear-vs-quadratic claim.
    """
    mtl = {r["key"]: r for r in tables.get("mtl", [])}
    ufl = {r["key"]: r for r in tables.get("ufl", [])}
    claims: list[dict[str, Any]] = []

    # 1. MT baseline below ST.
    mt, st = _vals(mtl.get("nyud/mt_baseline"), "delta_m"), _vals(mtl.get("nyud/single_task"), "delta_m")
    if mt and st:
        iv = diff_interval(mt, st)
        claims.append(_claim("MT baseline is below the single-task baseline (Δm < 0)", verdict_less(iv),
                             f"Δm(MT baseline) − Δm(ST) = {iv.text()}", "supported if the whole interval < 0",
                             diff=iv.diff, lo=iv.lo, hi=iv.hi))

    # 2. Medusa (N+E) on par with MTI-Net (N+E).
    me, mi = _vals(mtl.get("nyud/medusa_ne"), "delta_m"), _vals(mtl.get("nyud/mtinet_ne"), "delta_m")
    if me and mi:
        iv = diff_interval(me, mi)
        v = verdict_greater(iv, margin=-1.0)
        claims.append(_claim("Medusa (N+E) is within about 1 Δm point of MTI-Net (N+E) (not more than 1 point below)",
                             v, f"Δm(Medusa N+E) − Δm(MTI-Net N+E) = {iv.text()}",
                             "supported if the whole interval > −1; contradicted if the whole interval < −1",
                             diff=iv.diff, lo=iv.lo, hi=iv.hi))

    # 3. Medusa's UFL Δm above every baseline's: the other methods' UFL rows and the single-task networks
    # trained fully on PASCAL (the UFL table's "ST baseline" row, Δm 0 by construction, as in the paper's Table 2).
    med = _vals(ufl.get("ufl/medusa"), "pascal_delta_m")
    parts, verdicts, numbers = [], [], {}
    for key, row in ufl.items():
        if key == "ufl/medusa" or not (key.startswith("ufl/") or key == "single_task"):
            continue
        other = _vals(row, "pascal_delta_m")
        if not med or not other:
            continue
        iv = diff_interval(med, other)
        verdicts.append(verdict_greater(iv))
        parts.append(f"vs {row['model']}: {iv.text()}")
        numbers[key] = {"diff": iv.diff, "lo": iv.lo, "hi": iv.hi}
    if verdicts:
        claims.append(_claim("Medusa's UFL Δm is above every baseline's", combine(verdicts),
                             "PASCAL Δm(Medusa UFL) − Δm(baseline: UFL, or trained fully for ST): "
                             + "; ".join(parts),
                             "supported if every interval > 0; contradicted if any interval < 0",
                             comparisons=numbers))

    # 4. About 25 % fewer parameters than MTI-Net (deterministic counts: no noise).
    if params:
        parts, verdicts, numbers = [], [], {}
        for setting, counts in params.items():
            if "medusa" not in counts or "mtinet" not in counts:
                continue
            fewer = 1.0 - counts["medusa"] / counts["mtinet"]
            verdicts.append(SUPPORTED if 0.15 <= fewer <= 0.35 else CONTRADICTED)
            parts.append(f"{setting}: Medusa {counts['medusa'] / 1e6:.2f} M vs MTI-Net {counts['mtinet'] / 1e6:.2f} M "
                         f"= {100 * fewer:.1f} % fewer")
            numbers[setting] = fewer
        if verdicts:
            claims.append(_claim("Medusa has about 25 % fewer parameters than MTI-Net", combine(verdicts),
                                 "; ".join(parts), "supported if 15-35 % fewer in every setting (exact counts of every "
                                 "parameter, as SPEC counts them: auxiliary and deep-supervision heads included)",
                                 fewer=numbers))

    # 5. Linear (Medusa) vs quadratic (MTI-Net) growth with the number of tasks.
    if scaling and "medusa" in scaling and "mtinet" in scaling:
        g = {m: growth(c) for m, c in scaling.items()}
        ok = g["medusa"]["label"] == "linear" and g["mtinet"]["label"] == "quadratic"
        bad = g["medusa"]["label"] != "linear" or g["mtinet"]["label"] == "linear"
        text = "; ".join(
            f"{m}: {g[m]['label']} (increments {', '.join(f'{v / 1e6:.2f}' for v in g[m]['increments'])} M"
            + (f"; second differences {', '.join(f'{v / 1e6:.2f}' for v in g[m]['second_differences'])} M"
               if g[m]["label"] != "linear" else "") + ")"
            for m in scaling)
        claims.append(_claim("Parameters grow linearly with the number of tasks for Medusa, quadratically for MTI-Net",
                             SUPPORTED if ok else (CONTRADICTED if bad else UNRESOLVED),
                             f"params for T = 1..{len(scaling['medusa'])} semseg-like tasks: {text}",
                             "supported if Medusa's increments are constant and MTI-Net's grow by a constant step "
                             "(quadratic)",
                             growth=g))
    return claims


def claims_markdown(claims: list[dict[str, Any]]) -> str:
    """The Claims section's table."""
    lines = ["| Claim (paper) | Verdict | Measured | Rule |", "|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['claim']} | **{c['verdict']}** | {c['evidence']} | {c['rule']} |")
    return "\n".join(lines)
