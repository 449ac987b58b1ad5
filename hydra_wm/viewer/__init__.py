"""`hydra-wm viewer`: a local, offline browser viewer for result folders and live play (docs/viewer.md).

* `results`: reads what `generate`, `demo` and `rollout` write (and an `eval` report beside it) into one shape;
* `live`: live play on the built-in Flatland model, a thin loop over the rollout API;
* `server`: the standard library's HTTP server with a JSON API and the hand-written page in ``static/``.
"""

from .results import KINDS, ResultSample, list_samples, load_sample
from .server import Viewer, make_server

__all__ = ["KINDS", "ResultSample", "Viewer", "list_samples", "load_sample", "make_server"]
