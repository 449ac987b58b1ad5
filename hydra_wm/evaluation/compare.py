"""`hydra-wm compare A B`: is model A really better than model B on the same clips?

Two `hydra-wm eval` reports of the same samples are compared clip by clip (paired): for each metric, the mean of
A and of B, the mean paired difference A − B with a percentile-bootstrap confidence interval (clips resampled
with replacement), and how many clips A wins, ties and loses, with the exact two-sided sign-test p-value over
the clips that are not tied. Which direction is "better" comes from the metric (`LOWER_IS_BETTER`); a diagnostic
without one (`NO_DIRECTION`: how close drawn subjects are to where memory showed them) counts "better" as higher
and is marked · instead of an arrow.

Why by hand: a percentile bootstrap of a mean and a binomial sign test are a few lines of numpy and `math.comb`;
scipy (whose `stats.bootstrap` does the same) is not otherwise a dependency. A paired test matters here because
the clips differ far more from each other than the models do: on Flatland a clip's subject-presence score is
mostly decided by the clip, so two means 0.03 apart can be a clear or a meaningless difference, and only the
per-clip pairing tells which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io_utils import read_json

LOWER_IS_BETTER = ("lpips", "missing", "position_error", "identity")
NO_DIRECTION = ("stale_presence",)
DEFAULT_METRICS = (
    "psnr",
    "psnr_reentry",
    "background_psnr",
    "background_psnr_revisit",
    "presence_reentry",
    "missing_reentry",
    "position_error_reentry",
    "identity_reentry",
)


def lower_is_better(metric: str) -> bool:
    return metric.removesuffix("_reentry") in LOWER_IS_BETTER


@dataclass(frozen=True)
class PairedResult:
    metric: str
    clips: int  # clips where both reports define the metric
    mean_a: float
    mean_b: float
    diff: float  # mean of A − B over those clips
    low: float  # bootstrap confidence interval of `diff`
    high: float
    wins: int  # clips where A is better (direction from the metric)
    ties: int
    losses: int
    p_sign: float  # exact two-sided sign test over wins vs losses

    @property
    def a_better(self) -> bool:
        """The interval excludes zero on A's side."""
        return self.low > 0 if not lower_is_better(self.metric) else self.high < 0

    def as_dict(self) -> dict:
        return {**self.__dict__, "a_better": self.a_better}


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial sign test: P(a split at least this uneven | p = 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # exact integers: no overflow for large n
    return min(1.0, 2.0 * tail)


def bootstrap_mean_ci(
    values: np.ndarray, *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement, seeded)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def _number(value, where: str, sample: str, metric: str) -> float:
    """A per-sample metric value as a float; NaN for an undefined (None, as eval writes NaN), missing or skipped
    ("skipped: ...") value; anything else that is not a number is an error naming the report, sample and metric."""
    if value is None or (isinstance(value, str) and value.startswith("skipped")):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(
            f"{where}: per_sample {sample!r}: metric {metric!r}: expected a number, null or 'skipped: ...', "
            f"got {value!r:.40}"
        )
    return float(value)


def paired_comparison(
    report_a: dict,
    report_b: dict,
    metrics: list[str] | tuple[str, ...] | None = None,
    *,
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    tie_tol: float = 1e-9,
    names: tuple[str, str] = ("A", "B"),
) -> list[PairedResult]:
    """Compare two eval reports (``metrics.json`` contents) clip by clip; see the module docstring.

    Both reports must score the same samples (by name). A metric missing from both reports' columns is an error;
    clips where either value is undefined (e.g. a re-entry metric of a clip without a re-entry) are left out of
    that metric only."""
    samples_a = {s["name"]: s["metrics"] for s in report_a.get("per_sample", [])}
    samples_b = {s["name"]: s["metrics"] for s in report_b.get("per_sample", [])}
    if not samples_a or not samples_b:
        empty = names[0] if not samples_a else names[1]
        raise InputError(f"{empty}: per_sample: expected per-sample metrics (a `hydra-wm eval` metrics.json)")
    if set(samples_a) != set(samples_b):
        only_a, only_b = sorted(set(samples_a) - set(samples_b)), sorted(set(samples_b) - set(samples_a))
        raise InputError(
            f"{names[0]} vs {names[1]}: per_sample: expected the same samples; only in "
            f"{names[0]}: {only_a[:3]}{'...' if len(only_a) > 3 else ''}, only in {names[1]}: "
            f"{only_b[:3]}{'...' if len(only_b) > 3 else ''}"
        )
    order = sorted(samples_a)
    if metrics is None:
        available = set(report_a.get("columns", [])) & set(report_b.get("columns", []))
        metrics = [m for m in DEFAULT_METRICS if m in available] or sorted(available)
    results = []
    for metric in metrics:
        if not any(metric in samples_a[n] or metric in samples_b[n] for n in order):
            raise InputError(
                f"{names[0]}: metric {metric!r}: not in the reports (columns: {', '.join(report_a.get('columns', []))})"
            )
        a = np.array([_number(samples_a[n].get(metric), names[0], n, metric) for n in order])
        b = np.array([_number(samples_b[n].get(metric), names[1], n, metric) for n in order])
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
        diff = a - b
        better = -diff if lower_is_better(metric) else diff
        wins, losses = int((better > tie_tol).sum()), int((better < -tie_tol).sum())
        low, high = bootstrap_mean_ci(diff, resamples=resamples, level=level, seed=seed)
        results.append(
            PairedResult(
                metric=metric,
                clips=int(keep.sum()),
                mean_a=float(a.mean()) if a.size else math.nan,
                mean_b=float(b.mean()) if b.size else math.nan,
                diff=float(diff.mean()) if diff.size else math.nan,
                low=low,
                high=high,
                wins=wins,
                ties=int(diff.size) - wins - losses,
                losses=losses,
                p_sign=sign_test(wins, losses),
            )
        )
    return results


def read_report(path: str | Path) -> dict:
    """A `hydra-wm eval` report: its metrics.json, or the folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (expected a `hydra-wm eval` metrics.json or its folder)")
    report = read_json(path)
    if not isinstance(report, dict) or not isinstance(report.get("per_sample"), list):
        raise InputError(f"{path}: per_sample: expected a list of per-sample metrics (a `hydra-wm eval` report)")
    for i, sample in enumerate(report["per_sample"]):
        if not (
            isinstance(sample, dict) and isinstance(sample.get("name"), str) and isinstance(sample.get("metrics"), dict)
        ):
            raise InputError(f'{path}: per_sample[{i}]: expected {{"name": str, "metrics": {{...}}}}')
    return report


def format_comparison(results: list[PairedResult], names: tuple[str, str] = ("A", "B"), level: float = 0.95) -> str:
    a, b = names
    lines = [
        f"| metric | clips | {a} | {b} | {a} − {b} | {level:.0%} CI | {a} better / tie / worse | sign-test p |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        metric = r.metric.removesuffix("_reentry")
        arrow = "·" if metric in NO_DIRECTION else "↓" if lower_is_better(r.metric) else "↑"
        lines.append(
            f"| {r.metric} {arrow} | {r.clips} | {r.mean_a:.3f} | {r.mean_b:.3f} | {r.diff:+.3f} | "
            f"[{r.low:+.3f}, {r.high:+.3f}] | {r.wins} / {r.ties} / {r.losses} | {r.p_sign:.2g} |"
        )
    return "\n".join(lines)
