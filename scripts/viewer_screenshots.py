"""The README's pictures of `hydra-wm viewer` (docs/images/viewer-results.png, viewer-live.png), taken with the
system's headless chromium through Playwright: the results browser on a `hydra-wm demo` folder with an `eval`
report beside it, and live play after a few steered chunks.

    python scripts/viewer_screenshots.py --out docs/images
"""

import argparse
import os
import tempfile
import threading
from pathlib import Path

import torch
from playwright.sync_api import sync_playwright

from hydra_wm.cli import main as cli
from hydra_wm.io_utils import atomic_path
from hydra_wm.viewer import Viewer, make_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--frame", type=int, default=6, help="generated frame shown in the results picture")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out, here = args.out.resolve(), Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the page shows the folder as given: demo_out, as after `make demo`
        folder = Path("demo_out")
        assert cli(["demo", "--samples", "2", "--out", str(folder)]) == 0
        assert cli(["eval", str(folder / "pred"), str(folder / "data"), "--quiet"]) == 0
        server = make_server(Viewer(str(folder)), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 860})
            page.goto(base + "/")
            page.wait_for_selector("#retrieval .block")
            page.fill("#timeline", str(args.frame))
            page.dispatch_event("#timeline", "input")
            page.wait_for_function(f"document.getElementById('retrieval').dataset.frame === '{20 + args.frame}'")
            page.wait_for_timeout(500)
            with atomic_path(out / "viewer-results.png") as tmp_png:
                page.screenshot(path=str(tmp_png), type="png")
            page.click("#tab-live")
            page.wait_for_function("document.querySelectorAll('#bank .thumb').length === 20")
            for i, action in enumerate(("left", "left", "right", "right")):
                page.click(f"#live-{action}")
                page.wait_for_function(f"document.querySelectorAll('#bank .thumb').length === {30 + 10 * i}")
            page.wait_for_selector("#live-retrieval .block")
            page.wait_for_timeout(1500)  # the new chunk has played through
            with atomic_path(out / "viewer-live.png") as tmp_png:
                page.screenshot(path=str(tmp_png), type="png")
            browser.close()
        server.shutdown()
        os.chdir(here)
    print(f"wrote {args.out / 'viewer-results.png'} and {args.out / 'viewer-live.png'}")


if __name__ == "__main__":
    main()
