"""`hydra-wm` command line (also `python -m hydra_wm`).

Each sub-command lives in its own module under `hydra_wm/commands/` and exposes `add_parser(subparsers)`,
which registers its arguments and sets `func`, a function taking the parsed namespace.

Exit codes (docs/cli.md): 0 done; 2 bad input, an output that cannot be written or a bad checkpoint (one line on
stderr, no traceback); 3 finished, but some items failed (listed); 128 + N stopped by signal N (130 SIGINT,
143 SIGTERM; `train` saves a checkpoint first); 141 (128 + SIGPIPE) when the reader of the output went away
(`hydra-wm ... | head`). argparse's own usage errors exit 2 as well.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from .errors import EXIT_BAD_INPUT, HydraError
from .io_utils import write_problem

# One module per sub-command, in the order `--help` lists them.
COMMAND_MODULES = [
    "hydra_wm.commands.parity",
    "hydra_wm.commands.demo",
    "hydra_wm.commands.cameras",
    "hydra_wm.commands.flatland",
    "hydra_wm.commands.preprocess",
    "hydra_wm.commands.train",
    "hydra_wm.commands.export",
    "hydra_wm.commands.eval",
    "hydra_wm.commands.compare",
    "hydra_wm.commands.baseline",
    "hydra_wm.commands.generate",
    "hydra_wm.commands.rollout",
    "hydra_wm.commands.viewer",
]


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that `finally` blocks (temporary files) run before the exit."""


def _version() -> str:
    from . import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hydra-wm", description="HyDRA hybrid-memory video world model")
    parser.add_argument("--version", action="version", version=f"hydra-wm {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def _os_error_line(exc: OSError) -> str:
    """An OSError as one line naming its file: ``PATH: no space left on device``."""
    where = exc.filename if exc.filename is not None else ""
    return f"{where}: {write_problem(exc)}" if where else write_problem(exc)


def _raise_terminated(signum, frame):
    raise Terminated


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so that the final flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = f"hydra-wm {args.command}" + (f" {args.action}" if getattr(args, "action", None) else "")
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below, not at interpreter exit
    except HydraError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except OSError as exc:  # the file system refused: full, read-only, permissions (a bug is not an OSError)
        print(f"{name}: error: {_os_error_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Terminated:
        print(f"{name}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
