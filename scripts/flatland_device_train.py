"""Train the built-in Flatland models side by side for a fixed wall time: one prepared call on a lent GPU machine.

    python scripts/flatland_device_train.py --out $OUT [--seconds 420] [--attention memory full window]
        [--from shipped|scratch|DIR] [--batch-size 64] [--lr 1e-3] [--num-workers 4] [--runs runs/device]
        [--data flatland:small-glance] [-- EXTRA hydra-wm train OPTIONS]

The device machines are lent for ~15 minutes a session, at most 10 a command (`device` tool): too short to train to
a step count, long enough to train to a clock. This starts one `hydra-wm train` per attention at once (each with its
own data workers; a `flatland-tiny` model leaves an H100 mostly idle, so three share it), sends each SIGTERM after
`--seconds` (training saves a checkpoint and exits 143, its documented stop), exports each run and writes
`OUT/summary.json` (device, steps, logged step time, last losses, the exact commands). What comes back in `OUT`:

* ``flatland-ATTENTION.safetensors``: the export (raw weights), what `hydra-wm demo --weights` runs;
* ``runs/ATTENTION/``: the run folder with only its latest checkpoint (weights, optimizer, RNG states, data order),
  ``config.json`` and ``train_log.jsonl``. Put it back at ``--runs`` (carried to the next call) and the same
  command continues every run bit for bit (`--resume`), so the budget adds up across calls and sessions;
  `scripts/ship_flatland_model.py RUNS/ATTENTION --previous-card ...` ships it with its lineage.

`--from shipped` (default) continues the shipped weights of each attention with every weight trainable (a copy of
the starting weights goes into the run folder, so the run is self-contained); `--from DIR` does the same from the
``flatland-ATTENTION.safetensors`` files of DIR (a candidate shipped there with `scripts/ship_flatland_model.py
--dest DIR`, or a previous call's OUT: the options its weights were made with, such as camera-aware RoPE, come
with them); `--from scratch` starts the card's
generation-2 recipe (`flatland-tiny`, x0 prediction, memory tokens at full resolution, copy init); options after
`--` are passed to every `hydra-wm train` (e.g. ``-- --dim 192 --ffn-dim 512`` for the wide model). The defaults are
the card's recipe at 8x its batch: batch 64, LR 1e-3 (constant after 100 warm-up steps), x0 loss, bf16 autocast on
CUDA. Without CUDA it runs on the CPU (how the tests exercise it, at a tiny size).

Exit codes: 0 every run trained and exported; 1 some run failed (listed, with the tail of its log; the others are
still exported); 2 bad input; 128+N on SIGINT/SIGTERM (the runs are stopped, saved and exported first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from hydra_wm.errors import HydraError, InputError  # noqa: E402
from hydra_wm.flatland.model import ATTENTIONS, weights_path  # noqa: E402
from hydra_wm.io_utils import write_text_atomic  # noqa: E402
from hydra_wm.training import export_checkpoint  # noqa: E402
from hydra_wm.training.checkpoint import CHECKPOINT_DIR, latest_checkpoint  # noqa: E402
from hydra_wm.training.loop import LOG_FILE, logged_step_seconds, read_train_log  # noqa: E402

SCRATCH_RECIPE = [
    "--preset", "flatland-tiny", "--prediction", "sample", "--tokenizer-kernel", "1", "1", "1",
    "--qk-norm-init", "1.5", "--camera-init-std", "1.0", "--copy-init",
]  # fmt: skip
"""The generation-2 phase-1 options of the shipped cards (model card, "The shipped models")."""
STOP_GRACE_SECONDS = 120
"""How long a run may take to save its checkpoint after SIGTERM before it is killed."""


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the exports, runs and summary go ($OUT)")
    parser.add_argument("--seconds", type=float, default=420.0, help="training wall time of every run")
    parser.add_argument("--attention", nargs="+", default=list(ATTENTIONS), help="models to train (memory full window)")
    parser.add_argument(
        "--from", dest="start", default="shipped", help="shipped | scratch | DIR of flatland-ATTENTION.safetensors"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-workers", type=int, default=4, help="data workers per run")
    parser.add_argument("--runs", type=Path, default=Path("runs/device"), help="run folders (resumed when present)")
    parser.add_argument("--data", default="flatland:small-glance", help="the Flatland preset to train on")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args(argv)
    # The runs train in ROOT (their own working directory): absolute paths name the same folders here and there.
    args.out, args.runs = args.out.resolve(), args.runs.resolve()
    return args, extra


def check(args: argparse.Namespace) -> None:
    """One-line errors before anything starts."""
    unknown = [a for a in args.attention if a not in ATTENTIONS]
    if unknown:
        raise InputError(f"--attention: expected some of {', '.join(ATTENTIONS)}, got {unknown[0]!r}")
    if args.seconds <= 0 or args.batch_size < 1 or args.num_workers < 0:
        raise InputError("--seconds, --batch-size, --num-workers: expected > 0, >= 1 and >= 0")
    if not args.data.startswith("flatland:"):
        raise InputError(f"--data: expected flatland:PRESET, got {args.data!r}")
    if args.start not in ("shipped", "scratch") and not Path(args.start).is_dir():
        raise InputError(f"--from: expected shipped, scratch or a folder of weights, got {args.start!r}")
    for attention in args.attention:
        if args.start != "scratch" and not start_weights(args.start, attention).is_file():
            raise InputError(f"{start_weights(args.start, attention)}: no weights to continue (--from scratch?)")
    for folder in (args.out, args.runs):
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise InputError(f"{folder}: not writable")


def start_weights(start: str, attention: str) -> Path:
    """The weights `--from` continues: the shipped file, or DIR/flatland-ATTENTION.safetensors."""
    return weights_path(attention) if start == "shipped" else Path(start) / f"flatland-{attention}.safetensors"


def train_command(args: argparse.Namespace, attention: str, extra: list[str]) -> list[str]:
    run = args.runs / attention
    command = [sys.executable, "-m", "hydra_wm", "train", args.data, "--out", str(run)]
    if args.start != "scratch":
        init = run / "init.safetensors"  # inside the run: the run folder alone resumes and exports anywhere
        if not init.is_file():
            run.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(start_weights(args.start, attention), init)
        command += ["--init", str(init), "--trainable", "all"]
    else:
        command += [*SCRATCH_RECIPE, "--attention", attention]
    command += [
        "--flatland-samples", "100000", "--steps", "10000000", "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--warmup-steps", "100", "--grad-clip", "1.0", "--ema-decay", "0",
        "--timesteps", "sample", "--loss-weighting", "x0", "--shift", "1.0", "--no-activation-checkpointing",
        "--compile", "--seed", str(args.seed), "--num-workers", str(args.num_workers), "--save-every", "500",
        "--keep-checkpoints", "1", "--log-every", "50", "--no-progress",
    ]  # fmt: skip
    if latest_checkpoint(run) is not None:
        command.append("--resume")
    return command + extra


def summarise(run: Path, returncode: int | None, seconds: float) -> dict:
    log = read_train_log(run)
    latest = latest_checkpoint(run)
    return {
        "exit_code": returncode,
        "wall_seconds": round(seconds, 1),
        "latest_checkpoint": latest.name if latest else None,
        "logged_step_seconds": round(logged_step_seconds(log), 1),
        "last_log": log[-3:],
    }


def export(run: Path, out: Path) -> None:
    """`hydra-wm export` of the latest checkpoint, and the run folder cut to what resumes it."""
    export_checkpoint(run, out / f"flatland-{run.name}.safetensors", use_ema=False)
    keep = out / "runs" / run.name
    (keep / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    for name in ("config.json", LOG_FILE, "init.safetensors"):
        if (run / name).is_file():
            shutil.copy2(run / name, keep / name)
    latest = latest_checkpoint(run)
    shutil.copy2(latest, keep / CHECKPOINT_DIR / latest.name)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    try:
        check(args)
    except HydraError as exc:
        print(f"flatland_device_train: error: {exc}", file=sys.stderr)
        return 2
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    stop = {"signal": 0}

    def on_signal(signum, frame):  # stop early, but still save and export what was trained
        stop["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    commands = {a: train_command(args, a, extra) for a in args.attention}
    start = time.monotonic()
    procs = {}
    for attention, command in commands.items():
        log = open(args.runs / f"{attention}.log", "a")  # noqa: SIM115 - closed with the process below
        procs[attention] = (subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"flatland_device_train: {attention}: hydra-wm {' '.join(command[3:])}", flush=True)
    while time.monotonic() - start < args.seconds and not stop["signal"]:
        if all(p.poll() is not None for p, _ in procs.values()):
            break
        time.sleep(1.0)
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # training saves a checkpoint, then exits 143
    for proc, log in procs.values():
        try:
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    elapsed = time.monotonic() - start
    failed, runs = [], {}
    for attention, (proc, _) in procs.items():
        run = args.runs / attention
        command = "hydra-wm " + " ".join(commands[attention][3:])
        runs[attention] = {"command": command, **summarise(run, proc.returncode, elapsed)}
        if proc.returncode not in (0, 128 + signal.SIGTERM) or latest_checkpoint(run) is None:
            failed.append(attention)
            tail = (args.runs / f"{attention}.log").read_text().splitlines()[-5:]
            print(f"flatland_device_train: {attention} failed (exit {proc.returncode}):\n  " + "\n  ".join(tail))
            continue
        export(run, args.out)
    summary = {"device": device, "seconds": args.seconds, "from": args.start, "runs": runs, "failed": failed}
    write_text_atomic(args.out / "summary.json", json.dumps(summary, indent=1))
    for attention, record in runs.items():
        last = record["last_log"][-1] if record["last_log"] else {}
        print(f"{attention}: {record['latest_checkpoint']} loss {last.get('loss', float('nan')):.4f} "
              f"{last.get('step_seconds', float('nan')):.3f} s/step")  # fmt: skip
    print(f"wrote {args.out / 'summary.json'} ({device})")
    if stop["signal"]:
        return 128 + stop["signal"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
