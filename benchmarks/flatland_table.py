"""The built-in models' table (docs/results.md): shipped Flatland models vs the baselines on held-out clips, with
`hydra-wm eval`.

    python benchmarks/flatland_table.py [--samples 32] [--seed 1000] [--out runs/flatland-table] [--threads 2]
        [--sampling-steps 20,1] [--camera-retrieval] [--logit-scale S] [--view-snap TOL] [--reuse]

1. `hydra-wm demo --no-video` with every shipped model (memory, window, full: those that exist and were trained on
   the memory model's Flatland preset; the others are named under the table) on the same
   `--samples` clips of world seed `--seed` (the shipped models trained on seed 0), which also writes the clips;
   once per entry of `--sampling-steps` (the first is the model card's setting; 1 step gives the model's
   posterior-mean prediction x0 = x1 - v, which maximises PSNR for a model that cannot yet sample sharply);
   with `--camera-retrieval`, also the memory model with the camera-FOV retrieval ablation (`--retrieval camera`);
   with `--logit-scale S`, also memory and full with every attention logit multiplied by S (`--logit-scale`, the
   softer-attention calibration of docs/deviations.md), compared with each other; with `--view-snap TOL`, also
   memory, full and window sampled with view snapping (`hydra-wm demo --view-snap`), compared with each other and
   with the plain memory row (every other row samples without snapping, whatever the model cards say);
2. `hydra-wm baseline` on those clips: `repeat-last` and `closest-camera` (non-learned floors), and the two oracles
   that read the world's truth, `oracle-frozen` and `oracle-walk-on` (perfect scenery; subjects stopped where the
   context last had them / walking on at their last step: what remembering without and with a motion model buys);
3. `hydra-wm eval` of every prediction folder against the clips;
4. prints a markdown table (overall, and after a subject re-enters the view) plus the retrieval scores of the
   memory model and paired per-clip comparisons of memory against window and full (`hydra-wm compare`: mean
   difference with a bootstrap 95% interval, wins / ties / losses, sign test), and writes it to OUT/table.md and
   OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from hydra_wm.cli import main as cli
from hydra_wm.evaluation.baselines import BASELINES
from hydra_wm.evaluation.compare import format_comparison, paired_comparison
from hydra_wm.flatland.model import ModelCard, available_attentions, weights_path
from hydra_wm.io_utils import write_text_atomic

COLUMNS = [
    ("psnr", "PSNR"),
    ("psnr_reentry", "PSNR re-entry"),
    ("background_psnr", "bg PSNR"),
    ("background_psnr_revisit", "bg PSNR revisited"),
    ("presence_reentry", "presence re-entry (IoU)"),
    ("missing_reentry", "missing re-entry"),
    ("position_error_reentry", "pos. err. re-entry (px)"),
    ("identity_reentry", "identity dist. re-entry"),
    ("stale_presence_reentry", "re-entry: IoU with the view's old place"),
    ("stale_presence_truth_reentry", "… with the true place, same frames"),
]
PAIRED_METRICS = ["psnr", "background_psnr_revisit", "presence_reentry", "missing_reentry", "position_error_reentry"]
LABELS = {
    "memory": "HyDRA (memory)",
    "window": "window (no memory)",
    "full": "full attention",
    "memory-camera": "HyDRA weights, camera-FOV retrieval (ablation)",
    "repeat-last": "repeat last context frame",
    "closest-camera": "copy closest-camera context frame",
    "oracle-frozen": "oracle: true scenery, subjects stopped where last seen",
    "oracle-walk-on": "oracle: true scenery, subjects walking on at their last step",
}


def run(argv: list[str]) -> None:
    code = cli(argv)
    if code:
        raise SystemExit(f"`hydra-wm {' '.join(argv)}` failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("runs/flatland-table"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sampling-steps", default="20,1", help="comma-separated sampling step counts")
    parser.add_argument(
        "--camera-retrieval",
        action="store_true",
        help="add a row: the memory model with the camera-FOV retrieval ablation (first step count)",
    )
    parser.add_argument(
        "--logit-scale",
        type=float,
        metavar="S",
        help="add rows: memory and full with every attention logit multiplied by S (first step count)",
    )
    parser.add_argument(
        "--view-snap",
        type=float,
        metavar="TOL",
        help="add rows: memory, full and window sampled with view snapping at tolerance TOL (first step count); "
        "every other row samples without it, whatever the model cards say",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep outputs already in OUT (a demo folder with metrics.json, an eval report) "
        "instead of regenerating them: re-renders the table after an interruption or a change "
        "of format; only for OUT written with the same models, clips and settings",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out, rows, retrieval, reports = args.out, {}, {}, {}
    models = available_attentions()
    if not models:
        raise SystemExit("no shipped Flatland weights in hydra_wm/flatland/weights/")
    # One table, one world: models trained on another Flatland preset than the memory model's are left out
    # (their clips would differ), and said so.
    worlds = {attention: ModelCard.for_weights(weights_path(attention)).flatland_preset for attention in models}
    world = worlds.get("memory", worlds[models[0]])
    elsewhere = [f"{LABELS[a]} (trained on world `{worlds[a]}`)" for a in models if worlds[a] != world]
    models = [a for a in models if worlds[a] == world]
    step_counts = [int(s) for s in args.sampling_steps.split(",")]
    generated, fresh = {}, set()  # fresh: outputs (re)made in this run, whose evaluation is redone too
    plain = ["--view-snap", "0"]  # the models themselves: no view snapping, whatever the cards say
    runs = [(attention, attention, steps, plain) for attention in models for steps in step_counts]  # (row, model,..)
    if args.camera_retrieval and "memory" in models:
        runs.append(("memory-camera", "memory", step_counts[0], ["--retrieval", "camera", *plain]))
    soft = {}  # row -> the model it softens
    if args.logit_scale is not None:
        for attention in ("memory", "full"):
            if attention in models:
                soft[f"{attention}-soft"] = attention
                scale = ["--logit-scale", f"{args.logit_scale:g}", *plain]
                runs.append((f"{attention}-soft", attention, step_counts[0], scale))
    snapped = {}  # row -> the model it samples with view snapping
    if args.view_snap is not None:
        for attention in ("memory", "full", "window"):
            if attention in models:
                snapped[f"{attention}-snap"] = attention
                runs.append((f"{attention}-snap", attention, step_counts[0], ["--view-snap", f"{args.view_snap:g}"]))
    for row, attention, steps, extra in runs:
        name = f"{row}-{steps}"
        if not (args.reuse and (out / name / "metrics.json").is_file()):
            fresh.add(name)
            run(
                [
                    "demo",
                    "--attention",
                    attention,
                    "--samples",
                    str(args.samples),
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(out / name),
                    "--no-video",
                    "--steps",
                    str(steps),
                    *extra,
                ]
            )
        generated[name] = (row, steps)
        report = json.loads((out / name / "metrics.json").read_text())
        if attention == "memory" and row not in soft and row not in snapped:  # (these retrieve the same frames)
            retrieval[name] = {k: v for k, v in report["mean"].items() if k.startswith("retrieval_")}
    data = out / next(iter(generated)) / "data"
    for kind in BASELINES:
        if not (args.reuse and (out / "eval" / kind / "metrics.json").is_file()):
            fresh.add(kind)
            run(["baseline", kind, str(data), str(out / kind), "--quiet"])
    for name in [*generated, *BASELINES]:
        pred = out / name / "pred" if name in generated else out / name
        evaluated = out / "eval" / name / "metrics.json"
        # an evaluation older than the predictions it scored (a model re-generated since) is redone
        stale = not evaluated.is_file() or (
            name in generated and evaluated.stat().st_mtime < (out / name / "metrics.json").stat().st_mtime
        )
        if name in fresh or not args.reuse or stale:
            run(["eval", str(pred), str(data), "--quiet", "--out", str(out / "eval" / name)])
        reports[name] = json.loads((out / "eval" / name / "metrics.json").read_text())
        rows[name] = reports[name]["mean"]

    def label(name: str) -> str:
        if name in generated:
            row, steps = generated[name]
            text = LABELS[soft.get(row, snapped.get(row, row))]
            text += f", attention logits x{args.logit_scale:g}" if row in soft else ""
            text += f", view snapping {args.view_snap:g}" if row in snapped else ""
            return f"{text}, {steps} step{'s' if steps > 1 else ''}"
        return LABELS[name]

    def cell(value) -> str:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"

    lines = ["| model | " + " | ".join(label for _, label in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, mean in rows.items():
        lines.append(f"| {label(name)} | " + " | ".join(cell(mean.get(key)) for key, _ in COLUMNS) + " |")
    for name, r in retrieval.items():
        lines.append("")
        lines.append(
            f"Retrieval ({label(name)}, {args.samples} clips, every target frame, block and "
            f"step): the top-1 memory frame shows >= half of the frame's view in {r['retrieval_hit']:.1%} of cases "
            f"(chance {r['retrieval_hit_chance']:.1%}); mean view overlap of the retrieved frames "
            f"{r['retrieval_overlap']:.3f} (chance {r['retrieval_overlap_chance']:.3f}); it shows nearly the same view "
            f"(overlap >= 0.9) in {r['retrieval_same_view']:.1%} (chance {r['retrieval_same_view_chance']:.1%})."
        )
    paired = {}
    first = step_counts[0]
    pairs = [("memory", "window"), ("memory", "full"), ("memory-soft", "full-soft"), ("memory-soft", "memory")]
    pairs += [("memory-snap", "full-snap"), ("memory-snap", "window-snap"), ("memory-snap", "memory")]
    for mine, other in pairs:
        a, b = f"{mine}-{first}", f"{other}-{first}"
        if a in rows and b in rows:
            results = paired_comparison(reports[a], reports[b], PAIRED_METRICS, names=(a, b))
            paired[f"{a} vs {b}"] = [r.as_dict() for r in results]
            lines += [
                "",
                f"Paired per clip, {label(a)} vs {label(b)} ({args.samples} clips; 95% bootstrap "
                "interval of the mean difference; sign test over the clips that are not tied):",
                "",
                format_comparison(results, (mine, other)),
            ]
    lines += ["", f"World: Flatland `{world}`, {args.samples} clips of world seed {args.seed}."]
    if elsewhere:
        lines.append("Not in this table (another world): " + "; ".join(elsewhere) + ".")
    table = "\n".join(lines)
    print(table)
    write_text_atomic(out / "table.md", table + "\n")
    write_text_atomic(
        out / "table.json", json.dumps({"rows": rows, "retrieval": retrieval, "paired": paired}, indent=1)
    )


if __name__ == "__main__":
    main()
