"""Seconds per live-play chunk of `hydra-wm viewer` (docs/viewer.md): the viewer's own `LiveSession` steered through
a fixed sequence of turns, each chunk timed as the page shows it (selection, denoising, decoding).

    python scripts/viewer_live_timing.py --chunk-frames 10 --threads 1 --chunks 12
"""

import argparse
import platform
import statistics
import subprocess

import torch

from hydra_wm.viewer.live import LiveSession

ACTIONS = ("left", "hold", "right", "right", "hold", "left")


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-frames", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model card's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--attention", default="memory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    session = LiveSession(args.attention, chunk_frames=args.chunk_frames, steps=args.steps)
    seconds = [session.step(ACTIONS[i % len(ACTIONS)]).seconds for i in range(args.chunks)]
    state = session.state()
    print(
        f"{cpu_model()}, {torch.get_num_threads()} thread(s); {state['model']}, {args.chunk_frames} frames a chunk, "
        f"{state['steps']} steps, DiT input {state['chunks'][-1]['dit_frames']} frames"
    )
    print("seconds per chunk: " + " ".join(f"{s:.2f}" for s in seconds))
    print(f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s, bank {state['bank_frames']} frames")


if __name__ == "__main__":
    main()
