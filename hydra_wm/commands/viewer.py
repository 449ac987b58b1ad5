"""`hydra-wm viewer [FOLDER]`: a local page in the browser, fully offline (docs/viewer.md).

With FOLDER (what `generate`, `demo` or `rollout` wrote) it opens the results browser: context | generated |
ground truth on one timeline, what the current frame retrieved, the camera path from above, per-frame metrics
(with exit / entry markers when an `eval` report sits beside it). Without FOLDER it opens live play: steer the
camera through a held-out Flatland world while the built-in model generates it chunk by chunk on the CPU.
Listens on 127.0.0.1 unless --host says otherwise; Ctrl+C stops it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "viewer",
        help="browse result folders and play the built-in world live, in a local offline web page",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("folder", nargs="?", help="result folder to open (default: live play)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    live = p.add_argument_group("live play")
    live.add_argument(
        "--attention", default="memory", choices=("memory", "window", "full"), help="shipped model (default memory)"
    )
    live.add_argument("--chunk-frames", type=int, default=10, help="frames generated per step (default 10)")
    live.add_argument("--steps", type=int, help="sampling steps (default: the model card's, 20)")
    live.add_argument("--seed", type=int, default=1000, help="Flatland world seed of the start clips (default 1000)")
    live.add_argument("--threads", type=int, default=1, help="torch CPU threads for the model (default 1)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import InputError
    from ..viewer import Viewer, list_samples, make_server

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port: expected 0..65535, got {args.port}")
    for name in ("chunk_frames", "steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')}: expected at least 1, got {value}")
    folder = None
    if args.folder is not None:
        folder = str(Path(args.folder).resolve())
        kind, names = list_samples(folder)  # a bad folder is one line and exit 2, before listening
    torch.set_num_threads(args.threads)
    live = {"attention": args.attention, "chunk_frames": args.chunk_frames, "steps": args.steps, "seed": args.seed}
    server = make_server(Viewer(folder, live_options=live), args.host, args.port, verbose=args.verbose)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    what = f"{kind} folder {folder} ({len(names)} sample(s))" if folder else "live play"
    print(f"hydra-wm viewer: {what} at http://{shown}:{port}/ (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:  # Ctrl+C is how a server is stopped: a normal end
        print("hydra-wm viewer: stopped", flush=True)
    finally:
        server.server_close()
    return 0
