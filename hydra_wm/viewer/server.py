"""The viewer's local web server: a hand-written static page and a small JSON API, on the standard library's
threading HTTP server (no web framework, nothing fetched at run time; docs/viewer.md says why).

API (GET unless noted; errors are HTTP 4xx with ``{"error": "one line"}``, and the server keeps serving):

* ``/api/config``: the folder given on the command line, the live model's settings;
* ``/api/open?folder=F``: the folder's kind and samples;
* ``/api/sample?folder=F&sample=S``: frame counts, cameras, per-frame curves, events, notes;
* ``/api/frame?folder=F&sample=S&stream=context|generated|truth&t=T``: one frame as PNG;
* ``/api/retrieval?folder=F&sample=S&t=T[&step=N]``: what generated frame T retrieved;
* ``/api/live/state``, POST ``/api/live/reset`` ``{"seed", "index"}``, POST ``/api/live/step`` ``{"action"}``,
  ``/api/live/frame?t=T``, ``/api/live/retrieval?t=T[&step=N]``: live play (`live.LiveSession`).
"""

from __future__ import annotations

import errno
import io
import json
import math
import mimetypes
import sys
import threading
import traceback
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from ..errors import HydraError, InputError
from .results import ResultSample, list_samples, load_sample

STATIC = Path(__file__).resolve().parent / "static"
CACHED_SAMPLES = 4
MAX_BODY = 1 << 16


def png_bytes(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class Busy(HydraError):
    """The live world is generating a chunk; the request is refused, not queued."""


class Viewer:
    """The state behind the API: the folder given at start, a few opened samples, the live session."""

    def __init__(self, folder: str | None = None, *, live_options: dict | None = None) -> None:
        self.folder = folder
        self.live_options = dict(live_options or {})
        self.samples: OrderedDict[tuple[str, str], ResultSample] = OrderedDict()
        self.samples_lock = threading.Lock()
        self.live = None
        self.live_lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- results
    def open(self, folder: str) -> dict:
        if not folder:
            raise InputError("give a result folder")
        kind, names = list_samples(folder)
        with self.samples_lock:  # opening again reloads the samples
            for key in [k for k in self.samples if k[0] == folder]:
                del self.samples[key]
        return {"folder": folder, "kind": kind, "samples": names}

    def sample(self, folder: str, name: str) -> ResultSample:
        key = (folder, name)
        with self.samples_lock:
            if key in self.samples:
                self.samples.move_to_end(key)
                return self.samples[key]
        sample = load_sample(folder, name)
        with self.samples_lock:
            self.samples[key] = sample
            while len(self.samples) > CACHED_SAMPLES:
                self.samples.popitem(last=False)
        return sample

    # -------------------------------------------------------------------------------------------- live
    def live_session(self):
        from .live import LiveSession

        with self.live_lock:
            if self.live is None:
                self.live = LiveSession(**self.live_options)
            return self.live

    def live_call(self, method, *args):
        session = self.live_session()
        if not session.lock.acquire(blocking=False):
            raise Busy("the live world is generating a chunk; wait for it")
        try:
            return method(session, *args)
        finally:
            session.lock.release()


def _int(query: dict, name: str, default: int | None = None) -> int | None:
    values = query.get(name)
    if not values:
        if default is None and name != "step":
            raise InputError(f"missing parameter {name!r}")
        return default
    try:
        return int(values[0])
    except ValueError:
        raise InputError(f"parameter {name!r}: expected an integer, got {values[0]!r}") from None


def _str(query: dict, name: str) -> str:
    values = query.get(name)
    if not values or not values[0]:
        raise InputError(f"missing parameter {name!r}")
    return values[0]


class Handler(BaseHTTPRequestHandler):
    server_version = "hydra-wm-viewer"
    viewer: Viewer  # set on the subclass `make_server` builds

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    # ---------------------------------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200) -> None:
        body = json.dumps(_finite(data), allow_nan=False, default=_json_default).encode()
        self._send(status, body, "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": " ".join(str(message).split())}, status)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise InputError(f"request body of {length} bytes; at most {MAX_BODY}")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise InputError("request body: not JSON") from None
        if not isinstance(data, dict):
            raise InputError("request body: expected a JSON object")
        return data

    def _dispatch(self, routes: dict) -> None:
        url = urlparse(self.path)
        route = routes.get(url.path)
        try:
            if route is None:
                if self.command in ("GET", "HEAD") and self._static(url.path):
                    return
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")
                return
            route(parse_qs(url.query))
        except Busy as exc:
            self._error(HTTPStatus.CONFLICT, str(exc))
        except HydraError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except OSError as exc:
            if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                return  # the browser went away
            where = f"{exc.filename}: " if exc.filename else ""
            self._error(HTTPStatus.BAD_REQUEST, f"{where}{exc.strerror or exc}")
        except Exception as exc:  # a bug: keep serving, say so in the page and print the traceback
            traceback.print_exc(file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}: {exc}")

    def _static(self, path: str) -> bool:
        if path == "/favicon.ico":  # no icon; say so without an error in the browser's console
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            return True
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        if name != "index.html" and not path.startswith("/static/"):
            return False
        target = (STATIC / name).resolve()
        if STATIC.resolve() not in target.parents or not target.is_file():
            return False
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, target.read_bytes(), kind + ("; charset=utf-8" if kind.startswith("text") else ""))
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._dispatch(
            {
                "/api/config": self.config,
                "/api/open": self.open_folder,
                "/api/sample": self.sample,
                "/api/frame": self.frame,
                "/api/retrieval": self.retrieval,
                "/api/live/state": self.live_state,
                "/api/live/frame": self.live_frame,
                "/api/live/retrieval": self.live_retrieval,
            }
        )

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch({"/api/live/step": self.live_step, "/api/live/reset": self.live_reset})

    # ------------------------------------------------------------------------------------------- routes
    def config(self, query) -> None:
        options = self.viewer.live_options
        self._json({"folder": self.viewer.folder, "live": {k: v for k, v in options.items() if v is not None}})

    def open_folder(self, query) -> None:
        self._json(self.viewer.open(_str(query, "folder")))

    def sample(self, query) -> None:
        self._json(self.viewer.sample(_str(query, "folder"), _str(query, "sample")).describe())

    def frame(self, query) -> None:
        sample = self.viewer.sample(_str(query, "folder"), _str(query, "sample"))
        frames = sample.stream(_str(query, "stream"))
        t = _int(query, "t")
        if not 0 <= t < len(frames):
            raise InputError(f"frame {t}: the {query['stream'][0]} stream holds frames 0..{len(frames) - 1}")
        self._send(HTTPStatus.OK, png_bytes(frames[t]), "image/png")

    def retrieval(self, query) -> None:
        sample = self.viewer.sample(_str(query, "folder"), _str(query, "sample"))
        self._json(sample.retrieval(_int(query, "t"), _int(query, "step")))

    def live_state(self, query) -> None:
        self._json(self.viewer.live_call(lambda s: s.state()))

    def live_frame(self, query) -> None:
        t = _int(query, "t")
        self._send(HTTPStatus.OK, png_bytes(self.viewer.live_session().frame(t)), "image/png")

    def live_retrieval(self, query) -> None:
        t, step = _int(query, "t"), _int(query, "step")
        self._json(self.viewer.live_call(lambda s: s.retrieval(t, step)))

    def live_step(self, query) -> None:
        action = self._body().get("action")
        self._json(self.viewer.live_call(lambda s: (s.step(str(action)), s.state())[1]))

    def live_reset(self, query) -> None:
        body = self._body()
        try:
            seed, index = int(body.get("seed", self.viewer.live_options.get("seed") or 1000)), int(body.get("index", 0))
        except (TypeError, ValueError):
            raise InputError("reset: seed and index must be integers") from None
        self._json(self.viewer.live_call(lambda s: (s.reset(seed, index), s.state())[1]))


def _finite(value):
    """NaN and infinity (undefined metrics) as null, which JSON can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def make_server(viewer: Viewer, host: str = "127.0.0.1", port: int = 8000, *, verbose: bool = False):
    """A `ThreadingHTTPServer` serving `viewer`, bound (port 0: any free port); `InputError` (one line) when the
    address cannot be had."""
    handler = type("ViewerHandler", (Handler,), {"viewer": viewer})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is in use; pass --port with a free one") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise InputError(f"port {port} on {host}: permission denied; pass --port 1024 or above") from None
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.daemon_threads = True
    server.verbose = verbose
    return server
