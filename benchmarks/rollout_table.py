"""Long-horizon rollouts of the shipped Flatland models against the baselines, scored exactly (docs/rollout.md).

    python benchmarks/rollout_table.py [--samples 16] [--seed 1000] [--steps 20] [--threads 1]
        [--rows memory,memory-window,memory-full,window,full-bounded] [--out runs/rollout-table] [--paired memory]
        [--by-length] [--shard I/N] [--candidate NAME=ROW:FILE ...]

`--samples` held-out clips of world `long-glance` (20 context + 220 target frames: 11 chunks of 20; world seed
`--seed`, the shipped models trained on seed 0) are written in the HM-World layout to OUT/data and continued by
each row (model weights, history mode), chunk after chunk (`flatland.rollout.rollout_clip`, 8 recent + 12 memory
frames), and by the baselines (repeat the last context frame; copy the context frame of the closest camera,
`evaluation.baselines`). Rows:

* `memory`: HyDRA weights, `memory` history (recent + pre-selected frames: bounded cost);
* `memory-window`: HyDRA weights, `window` history (the newest 20 frames: same cost, no long-term memory);
* `memory-full`: HyDRA weights, `full` history (every frame so far: the exact path, cost grows);
* `window`: the window-attention model, `window` history;
* `full-bounded`: the full-attention model, `memory` history;
* `rollout`: the HyDRA weights fine-tuned on rollout chunks (`flatland-memory-rollout`, docs/rollout.md), `memory`
  history; `rollout-window`: the same weights, `window` history;
* `memory-oldest`, `rollout-oldest`: as `memory` and `rollout`, pre-selecting of the frames that show the same view
  the oldest (`--selection camera-oldest`: the condition clip's observed frame before any generated copy of it);
* `memory-snap`, `rollout-snap`: as `memory` and `rollout`, sampled with view snapping at tolerance 1 (the 40-frame
  demo's sampler; every other row samples without it, whatever the model cards say);
* `full-full`: the full-attention model over the full history (dense attention over up to 240 frames: ~10 min per
  clip at 20 steps on one thread; not run by default);
* `--candidate NAME=ROW:FILE` adds a row NAME: as ROW, with the DiT file FILE instead of the shipped weights (a
  candidate before it is shipped; its card beside it is used when present), paired like any other row.

Every clip's scores are cached in OUT/scores/ROW/NAME.json and its frames in OUT/pred/ROW/NAME.mp4 (lossless; the
layout `hydra-wm eval OUT/pred/ROW OUT/data` reads), so a stopped run resumes and a re-run only renders the tables.
Prints markdown tables (and writes OUT/table.md, OUT/table.json): PSNR per chunk (drift); background PSNR on
background the context showed, by the frames it was out of view before it came back; subject presence by the frames
the subject was hidden; paired per-clip comparisons of one row (`--paired`, default `memory`) against the others
on far returns (>= 20 frames) and PSNR, and with `--by-length` by rollout length (chunk by chunk, and the first k
chunks: where one row overtakes another).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from hydra_wm.data.video import write_video
from hydra_wm.evaluation.baselines import predict
from hydra_wm.evaluation.compare import format_comparison, paired_comparison
from hydra_wm.flatland import flatland_config, render_clip, write_dataset
from hydra_wm.flatland.model import load_flatland_model
from hydra_wm.flatland.rollout import mean_rollout_scores, rollout_clip, score_rollout
from hydra_wm.io_utils import write_text_atomic
from hydra_wm.rollout import RolloutConfig


class Row(NamedTuple):
    attention: str
    """Which shipped model (`load_flatland_model`)."""
    history: str
    """`RolloutConfig.history`."""
    label: str
    rollout: bool = False
    """The weights fine-tuned on rollout chunks (`flatland-ATTENTION-rollout`)."""
    selection: str = "camera"
    """`RolloutConfig.selection`."""
    view_snap: float = 0.0
    """View snapping tolerance (`pipeline.ViewSnap`; 0: the plain sampler, whatever the model card says)."""
    weights: Path | None = None
    """A DiT file instead of the shipped weights (`--candidate`)."""


ROWS = {
    "memory": Row("memory", "memory", "HyDRA, memory history (bounded)"),
    "memory-window": Row("memory", "window", "HyDRA weights, window history"),
    "memory-full": Row("memory", "full", "HyDRA weights, full history (exact)"),
    "window": Row("window", "window", "window model, window history"),
    "full-bounded": Row("full", "memory", "full-attention model, memory history"),
    "full-full": Row("full", "full", "full-attention model, full history"),
    "rollout": Row("memory", "memory", "HyDRA fine-tuned on rollout chunks, memory history", rollout=True),
    "rollout-window": Row("memory", "window", "HyDRA fine-tuned on rollout chunks, window history", rollout=True),
    "memory-oldest": Row("memory", "memory", "HyDRA, memory history, oldest copy of a view", selection="camera-oldest"),
    "memory-snap": Row("memory", "memory", "HyDRA, memory history, view snapping 1", view_snap=1.0),
    "rollout-snap": Row("memory", "memory", "HyDRA fine-tuned on rollout chunks, view snapping 1", True, view_snap=1.0),
    "rollout-oldest": Row(
        "memory", "memory", "HyDRA fine-tuned on rollout chunks, oldest copy of a view", True, "camera-oldest"
    ),
}
BASELINES = {"repeat-last": "repeat last context frame", "closest-camera": "copy closest-camera context frame"}
CHUNK = 20


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def clip_scores(out: Path, row: str, name: str, make) -> dict:
    """The cached scores of (row, clip), or `make()` -> (scores, uint8 frames) computed, written and cached."""
    path = out / "scores" / row / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    scores, frames = make()
    options = {"preset": "veryfast", "threads": "1"}
    write_video(out / "pred" / row / f"{name}.mp4", frames, 15, crf=0, pix_fmt="yuv444p", options=options)
    write_text_atomic(path, json.dumps(scores, allow_nan=True))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per chunk (the model cards': 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", default="memory,memory-window,memory-full,window,full-bounded")
    parser.add_argument("--out", type=Path, default=Path("runs/rollout-table"))
    parser.add_argument("--paired", default="memory", help="the row compared clip by clip with every other row")
    parser.add_argument(
        "--by-length",
        action="store_true",
        help="also compare --paired clip by clip at every rollout length: PSNR of chunk k alone and of the first k "
        "chunks (a clip of 20 + 20k frames); where one row overtakes another",
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="score only the clips whose index is I modulo N (to split a slow row over processes that share OUT; "
        "a later run without it reads every clip from the cache)",
    )
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=ROW:FILE",
        help="add a row NAME: as ROW with the DiT file FILE instead of the shipped weights (repeatable)",
    )
    args = parser.parse_args()
    specs = dict(ROWS)
    for text in args.candidate:
        name, _, rest = text.partition("=")
        base, _, file = rest.partition(":")
        if not name or name in ROWS or base not in ROWS or not Path(file).is_file():
            raise SystemExit(
                f"--candidate: expected NAME=ROW:FILE with a new NAME, ROW one of {', '.join(ROWS)} and FILE an "
                f"existing DiT file, got {text!r}"
            )
        specs[name] = ROWS[base]._replace(label=f"{ROWS[base].label}, weights {Path(file).name}", weights=Path(file))
    try:
        shard, shards = (int(x) for x in args.shard.split("/"))
        if not 0 <= shard < shards:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--shard: expected I/N with 0 <= I < N, got {args.shard!r}") from None
    torch.set_num_threads(args.threads)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in specs]
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; known: {', '.join(specs)}")
    config = flatland_config("long-glance")
    plan = [CHUNK] * (config.target_frames // CHUNK)
    names = write_dataset(args.out / "data", config, args.samples, args.seed, progress=False)
    names = {index: name for index, name in enumerate(names) if index % shards == shard}
    results: dict[str, dict[str, dict]] = {}
    seconds: dict[str, list[float]] = {}
    for row in rows:
        spec = specs[row]
        model = load_flatland_model(spec.attention, spec.weights, rollout=spec.rollout)
        context = model.flatland.context_frames
        rollout_config = RolloutConfig.for_context(context, CHUNK, spec.history, selection=spec.selection)
        results[row], seconds[row] = {}, []
        for index, name in names.items():
            clip = render_clip(config, args.seed, index)

            def make(clip=clip, model=model, rollout_config=rollout_config, snap=spec.view_snap):
                result = rollout_clip(model, clip, rollout_config, num_steps=args.steps, view_snap=snap)
                scores = score_rollout(result.generated, clip, config, result.chunk_frames)
                return {**scores, "chunk_seconds": result.seconds}, result.frames_uint8()

            results[row][name] = clip_scores(args.out, row, name, make)
            seconds[row] += results[row][name]["chunk_seconds"]
            print(f"{row:>14} {name}: PSNR {fmt(results[row][name]['psnr'])}", flush=True)
    for kind in BASELINES:
        results[kind] = {}
        for index, name in names.items():
            clip = render_clip(config, args.seed, index)

            def make(clip=clip, name=name, kind=kind):
                frames = predict(kind, args.out / "data" / name)
                target = torch.from_numpy(frames[config.context_frames :]).float().permute(3, 0, 1, 2) / 127.5 - 1.0
                return score_rollout(target, clip, config, plan), frames

            results[kind][name] = clip_scores(args.out, kind, name, make)
    means = {row: mean_rollout_scores(list(per_clip.values())) for row, per_clip in results.items()}
    labels = {**{r: specs[r].label for r in rows}, **BASELINES}
    text = tables(means, labels, seconds, results, args, len(names))
    print(text)
    write_text_atomic(args.out / "table.md", text + "\n")
    write_text_atomic(
        args.out / "table.json", json.dumps({"means": means, "args": {**vars(args), "out": str(args.out)}})
    )


FAR_PSNR = ["revisit_far", "psnr"]


def report(per_clip: dict[str, dict], columns: list[str]) -> dict:
    """Per-clip scores in the per-sample layout of a `hydra-wm eval` report, which `paired_comparison` reads."""
    return {"per_sample": [{"name": n, "metrics": {k: s[k] for k in columns}} for n, s in per_clip.items()],
            "columns": columns}  # fmt: skip


def length_metrics(per_clip: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per clip, PSNR by rollout length: ``psnr_chunk_k`` (the target frames of chunk k alone) and ``psnr_upto_k``
    (the first k chunks: the target half of a clip of 20 + 20k frames; chunks are equal in length, so it is the
    mean of their per-frame means)."""
    out = {}
    for name, scores in per_clip.items():
        chunks = scores["psnr_per_chunk"]
        out[name] = {f"psnr_chunk_{k + 1}": float(v) for k, v in enumerate(chunks)}
        out[name] |= {f"psnr_upto_{k + 1}": float(np.mean(chunks[: k + 1])) for k in range(len(chunks))}
    return out


def tables(means: dict, labels: dict, seconds: dict, results: dict, args, clips: int) -> str:
    first = next(iter(means.values()))
    chunks = len(first["psnr_per_chunk"])
    gaps, hidden = list(first["revisit"]), list(first["hidden"])
    lines = [
        f"{clips} held-out long-glance clips (seed {args.seed}; 20 context + 220 target frames, {chunks} chunks of "
        f"{CHUNK}), {args.steps} sampling steps, history 8 recent + 12 memory frames; `python "
        f"benchmarks/rollout_table.py --samples {args.samples} --steps {args.steps} --rows {args.rows}`",
        "",
        "| row | PSNR | bg PSNR | bg PSNR, far returns (>= 20 frames away) | new views | returns to invented views | "
        "presence (IoU) | s / chunk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, mean in means.items():
        per_chunk = fmt(float(np.mean(seconds[row]))) if seconds.get(row) else "–"
        lines.append(
            f"| {labels[row]} | {fmt(mean['psnr'])} | {fmt(mean['background_psnr'])} | {fmt(mean['revisit_far'])} | "
            f"{fmt(mean['new_view_psnr'])} | {fmt(mean['invented_revisit_psnr'])} | {fmt(mean['presence'], 3)} | "
            f"{per_chunk} |"
        )
    lines += ["", "PSNR per chunk (dB; drift):", ""]
    lines += ["| row | " + " | ".join(str(i + 1) for i in range(chunks)) + " |", "|---|" + "---:|" * chunks]
    for row, mean in means.items():
        lines.append(f"| {labels[row]} | " + " | ".join(fmt(v) for v in mean["psnr_per_chunk"]) + " |")
    pixels = first["revisit_pixels"]
    total = sum(pixels.values())
    lines += ["", "Background PSNR (dB) on background the context showed, by frames it was out of view before it "
              "came back (0: in view since the context; share of those pixels in brackets):", ""]  # fmt: skip
    lines += [
        "| row | " + " | ".join(f"{g} ({100 * pixels[g] / max(total, 1):.0f}%)" for g in gaps) + " |",
        "|---|" + "---:|" * len(gaps),
    ]
    for row, mean in means.items():
        lines.append(f"| {labels[row]} | " + " | ".join(fmt(mean["revisit"][g]) for g in gaps) + " |")
    events = first["hidden_events"]
    lines += ["", "Subject presence (IoU) after re-entering the view, by frames it was hidden (events):", ""]
    lines += ["| row | " + " | ".join(f"{h} ({events[h]})" for h in hidden) + " |", "|---|" + "---:|" * len(hidden)]
    for row, mean in means.items():
        lines.append(f"| {labels[row]} | " + " | ".join(fmt(mean["hidden"][h], 3) for h in hidden) + " |")
    base = args.paired
    if base in results:
        lines += ["", f"Paired per clip: {labels[base]} against each other row (far returns, PSNR):", ""]
        for other in results:
            if other == base:
                continue
            pair = (results[base], results[other])
            compared = paired_comparison(*(report(r, FAR_PSNR) for r in pair), FAR_PSNR, names=(base, other))
            lines += [f"{base} vs {labels[other]}:", "", format_comparison(compared, (base, other)), ""]
            if args.by_length:
                by_length = [length_metrics(r) for r in pair]
                columns = list(next(iter(by_length[0].values())))
                compared = paired_comparison(*(report(r, columns) for r in by_length), columns, names=(base, other))
                lines += [f"{base} vs {labels[other]}, by rollout length:", ""]
                lines += [format_comparison(compared, (base, other)), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
