"""Paired per-clip comparison of eval reports (`hydra-wm compare`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hydra_wm.cli import main
from hydra_wm.errors import InputError
from hydra_wm.evaluation.compare import bootstrap_mean_ci, format_comparison, paired_comparison, sign_test


def report(values: dict[str, list], names=None) -> dict:
    n = len(next(iter(values.values())))
    names = names or [f"sample_{i:05d}" for i in range(n)]
    return {
        "columns": list(values),
        "per_sample": [{"name": name, "metrics": {k: v[i] for k, v in values.items()}} for i, name in enumerate(names)],
    }


def test_sign_test_matches_the_binomial_distribution():
    assert sign_test(5, 0) == pytest.approx(2 / 32)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert sign_test(4, 1) == pytest.approx(2 * 6 / 32)
    assert sign_test(3, 3) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(1, 9) == sign_test(9, 1)
    assert sign_test(1500, 1500) == 1.0 and 0.0 <= sign_test(2000, 1000) < 1e-70  # thousands of clips


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_clips():
    rng = np.random.default_rng(1)
    small, large = rng.normal(1.0, 1.0, 10), rng.normal(1.0, 1.0, 1000)
    lo_s, hi_s = bootstrap_mean_ci(small, resamples=4000)
    lo_l, hi_l = bootstrap_mean_ci(large, resamples=4000)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5  # ~ 1/sqrt(n): 10x narrower for 100x the clips
    assert lo_l < 1.0 < hi_l
    assert bootstrap_mean_ci(np.full(7, 2.5)) == (2.5, 2.5)
    assert bootstrap_mean_ci(small, seed=3) == bootstrap_mean_ci(small, seed=3)  # seeded


def test_paired_comparison_sees_a_small_consistent_gain_that_unpaired_means_would_not():
    rng = np.random.default_rng(0)
    clip_effect = rng.uniform(10, 30, 40)  # clips differ far more than the models
    a = report({"psnr": list(clip_effect + 0.3), "missing_reentry": [0.2] * 40})
    b = report({"psnr": list(clip_effect), "missing_reentry": [0.5] * 20 + [0.2] * 20})
    psnr, missing = paired_comparison(a, b, ["psnr", "missing_reentry"])
    assert psnr.diff == pytest.approx(0.3) and psnr.low == pytest.approx(0.3) and psnr.a_better
    assert (psnr.wins, psnr.ties, psnr.losses) == (40, 0, 0) and psnr.p_sign < 1e-10
    # lower is better for `missing`: A wins where it is lower, ties where equal
    assert missing.diff == pytest.approx(-0.15) and missing.a_better
    assert (missing.wins, missing.ties, missing.losses) == (20, 20, 0)
    # reversed roles: B is not better
    reverse = paired_comparison(b, a, ["psnr"])[0]
    assert reverse.diff == pytest.approx(-0.3) and not reverse.a_better and reverse.losses == 40


def test_the_stale_subject_diagnostic_has_no_better_direction_in_the_table():
    a = report({"stale_presence_reentry": [0.5, 0.6], "presence_reentry": [0.2, 0.3], "missing": [0.1, 0.1]})
    b = report({"stale_presence_reentry": [0.4, 0.4], "presence_reentry": [0.1, 0.1], "missing": [0.2, 0.2]})
    rows = format_comparison(paired_comparison(a, b, ["stale_presence_reentry", "presence_reentry", "missing"]))
    stale, presence, missing = rows.splitlines()[2:]
    assert stale.startswith("| stale_presence_reentry · |") and "| 2 / 0 / 0 |" in stale  # counted as higher
    assert presence.startswith("| presence_reentry ↑ |") and missing.startswith("| missing ↓ |")


def test_undefined_values_are_left_out_per_metric_and_mismatches_are_errors():
    a = report({"presence_reentry": [0.5, None, float("nan"), 0.1], "psnr": [20.0, 21, 22, 23]})
    b = report({"presence_reentry": [0.4, 0.3, 0.2, 0.1], "psnr": [19.0, 22, 22, 24]})
    presence, psnr = paired_comparison(a, b, ["presence_reentry", "psnr"])
    assert presence.clips == 2 and presence.diff == pytest.approx(0.05)
    assert (presence.wins, presence.ties, presence.losses) == (1, 1, 0)
    assert psnr.clips == 4 and (psnr.wins, psnr.ties, psnr.losses) == (1, 1, 2)
    assert not psnr.a_better and psnr.low < 0 < psnr.high
    with pytest.raises(InputError, match="same samples"):
        paired_comparison(a, report({"psnr": [1.0] * 4}, names=list("abcd")), ["psnr"])
    with pytest.raises(InputError, match="'ssim'"):
        paired_comparison(a, b, ["ssim"])
    # default metrics: those of the standard list that both reports have
    assert [r.metric for r in paired_comparison(a, b)] == ["psnr", "presence_reentry"]


def test_compare_command_writes_json_and_fails_with_one_line(tmp_path, capsys):
    for name, shift in (("a", 1.0), ("b", 0.0)):
        (tmp_path / name).mkdir()
        rep = report({"psnr": [10.0 + shift + i for i in range(6)], "lpips": [0.3 - shift / 10] * 6})
        (tmp_path / name / "metrics.json").write_text(json.dumps(rep))
    code = main(
        [
            "compare",
            str(tmp_path / "a"),
            str(tmp_path / "b" / "metrics.json"),
            "--names",
            "mem",
            "win",
            "--metrics",
            "psnr",
            "lpips",
            "--out",
            str(tmp_path / "cmp.json"),
            "--resamples",
            "500",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "| mem − win |" in out.splitlines()[0]
    results = {r["metric"]: r for r in json.loads((tmp_path / "cmp.json").read_text())["results"]}
    assert results["psnr"]["diff"] == pytest.approx(1.0) and results["psnr"]["a_better"]
    assert results["lpips"]["diff"] == pytest.approx(-0.1) and results["lpips"]["wins"] == 6
    assert math.isclose(results["psnr"]["p_sign"], 2 / 64)
    code = main(["compare", str(tmp_path / "a"), str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing" in err and "metrics.json" in err
    (tmp_path / "bad.json").write_text("{")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "bad.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
