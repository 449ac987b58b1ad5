"""Small file helpers shared by every writer: atomic writes so nothing half-written is left behind, the up-front
check that an output location can be written, and JSON reading with one-line errors.

Files and folders are created with the permissions the umask gives (`0o666 & ~umask`, `0o777 & ~umask`), as
`open` and `mkdir` would, although they are first made under a temporary name (which `tempfile` creates 0600 /
0700).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError, OutputError

_UMASK_LOCK = threading.Lock()

# What an OSError while writing means to the user, by errno (anything else: its strerror).
_WRITE_PROBLEMS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "file too large for the file system",
}
PROBE_BYTES = 4096
"""Bytes the up-front probe writes (and fsyncs) into an output folder: one page, so a full disk shows."""


def current_umask() -> int:
    """The process's umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_problem(exc: OSError) -> str:
    """An OSError met while writing, in a few words ("read-only file system", "no space left on device", ...)."""
    return _WRITE_PROBLEMS.get(exc.errno or 0, exc.strerror or str(exc))


def _probe(folder: Path) -> str | None:
    """Write, fsync and delete a small file in the existing `folder`; what went wrong, or None."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hydra-wm-probe.", dir=folder)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return write_problem(exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return None


def _existing_base(path: Path, flag: str, start: Path | None = None) -> Path:
    """The nearest existing folder at or above `start` (default `path`), in which `path` would be created."""
    base = path if start is None else start
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"{flag} {path}: {base} exists and is not a directory")
    return base


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Check, before any heavy work, that the output folder `path` can be created and written.

    `path` must be a folder or not exist yet (then nothing is created: the probe goes to its nearest existing
    ancestor). A small file is written, fsynced and deleted there, so a read-only file system, a full disk or a
    missing permission is one `OutputError` line naming `flag` and the path, before anything is computed.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a directory")
    problem = _probe(_existing_base(path, flag))
    if problem:
        raise OutputError(f"{flag} {path}: cannot write there ({problem})")
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """As `check_output_dir`, for an output file: `path` must not be a folder, and its folder must be writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a directory; expected a file name")
    problem = _probe(_existing_base(path, flag, path.parent))
    if problem:
        raise OutputError(f"{flag} {path}: cannot write there ({problem})")
    return path


def _as_output_error(final: Path, exc: BaseException) -> OutputError | None:
    """An OutputError when `exc`, raised while writing `final`, came from the file system (full, read-only, ...).

    Writers in other languages (safetensors, torch's zip writer) raise their own types for a full disk, so a
    failure that is not an OSError is told apart by probing the folder."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_PROBLEMS:
        return OutputError(f"{final}: cannot write ({write_problem(exc)})")
    if isinstance(exc, Exception) and not isinstance(exc, OutputError) and final.parent.is_dir():
        problem = _probe(final.parent)
        if problem:
            return OutputError(f"{final}: cannot write ({problem})")
    return None


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create folder ({write_problem(exc)})") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _atomic(final: Path, make_temporary, mode: int) -> Iterator[Path]:
    """The temporary `make_temporary()` made beside `final`, given `mode & ~umask`; renamed onto `final` (a folder
    there is removed first) on success, removed on error; a file-system failure is one `OutputError` line."""
    _mkdir(final.parent)
    try:
        tmp = make_temporary()
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({write_problem(exc)})") from None
    try:
        yield tmp
        # once written: tempfile makes files 0600 and folders 0700, and some writers (safetensors' save_file)
        # recreate the file 0600 again
        os.chmod(tmp, mode & ~current_umask())
        if tmp.is_dir() and final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as exc:
        error = _as_output_error(final, exc)
        if error is not None:
            raise error from None
        raise
    finally:
        _remove(tmp)


def _temporary_file(final: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it.

    The temporary name keeps the final suffix so that writers choosing a format by extension (e.g. an mp4 muxer,
    matplotlib) still work. The file gets the umask's permissions. A failure caused by the file system (full,
    read-only) becomes one `OutputError` line naming `path`.
    """
    final = Path(path)
    with _atomic(final, lambda: _temporary_file(final), 0o666) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` (an older `path` is removed first),
    on error it is deleted. The folder gets the umask's permissions."""
    final = Path(path)
    make = lambda: Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))  # noqa: E731
    with _atomic(final, make, 0o777) as tmp:
        yield tmp


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    """Parsed JSON, or one `InputError` line naming the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def safetensors_header(path: str | os.PathLike) -> dict:
    """The JSON header of a safetensors file (tensor name → dtype, shape, data_offsets; ``__metadata__``), checked
    against the file's size: `ValueError` saying what is wrong (truncated, not safetensors), `OSError` if unreadable.

    The format: 8 bytes (little-endian header length N), N bytes of JSON header giving each tensor's
    ``data_offsets`` into the data that follows. A file cut short (a copy or a write that stopped) is smaller than
    the header says. No tensor is read.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"truncated: {size} bytes, not even a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise ValueError(
                f"truncated or not a safetensors file: {size} bytes, its header alone would need {8 + length}"
            )
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("not a safetensors file (unreadable header)") from None
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        raise ValueError("not a safetensors file (malformed header)") from None
    if size < 8 + length + end:
        raise ValueError(f"truncated: {size} bytes, the header says {8 + length + end}")
    return header


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a safetensors file, from its header and size alone (`safetensors_header`); None if whole."""
    try:
        safetensors_header(path)
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return None


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically: sample_2 before sample_10."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
