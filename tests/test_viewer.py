"""`hydra-wm viewer`: the result-folder reader against what the writers wrote, the HTTP API (bad input answered in
the page, the server still serving), the command's one-line errors, live play through the rollout API, and a real
browser (Debian's chromium driven by Playwright) that plays a folder and steps the live world."""

import io
import json
import shutil
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from test_rollout_cli import cameras, checkpoints, examples, finished  # noqa: F401 - a real rollout folder

from hydra_wm.cli import main
from hydra_wm.data.cameras import camera_poses
from hydra_wm.data.video import read_frames, write_video
from hydra_wm.errors import InputError
from hydra_wm.flatland import render_clip
from hydra_wm.flatland.model import load_flatland_model
from hydra_wm.flatland.rollout import start_rollout
from hydra_wm.flatland.world import ue_yaw_matrices
from hydra_wm.pipeline import RetrievalRecord, load_retrieval, save_retrieval
from hydra_wm.rollout import ChunkRecord, MemoryBank
from hydra_wm.viewer import Viewer, list_samples, load_sample, make_server
from hydra_wm.viewer.live import LiveSession, steer

CHROMIUM = Path("/usr/bin/chromium")
STATIC = Path(__file__).resolve().parents[1] / "hydra_wm" / "viewer" / "static"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    """`hydra-wm demo` on one held-out clip, and `hydra-wm eval` beside it (as a user would run them)."""
    out = tmp_path_factory.mktemp("viewer") / "demo_out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["demo", "--samples", "1", "--out", str(out), "--steps", "4"]) == 0
        assert main(["eval", str(out / "pred"), str(out / "data"), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def demo_rollout_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("viewer") / "rollout_out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["demo", "--rollout", "2", "--samples", "1", "--out", str(out), "--steps", "3"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _record(steps: int, blocks: int, frames: int, k: int, context: int, memory: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return RetrievalRecord(
        indices=torch.randint(0, memory, (steps, blocks, 1, frames, k), generator=g),
        scores=torch.rand(steps, blocks, 1, frames, k, generator=g),
        valid=torch.rand(steps, blocks, 1, frames, k, generator=g) > 0.2,
        num_context_frames=context,
        num_memory_frames=memory,
        frames_per_memory=2,
        timesteps=[float(999 - 10 * s) for s in range(steps)],
    )


def _noise_video(frames: int, seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


@pytest.fixture
def generate_folder(tmp_path) -> Path:
    """What `hydra-wm generate --save-retrieval` writes: NAME.mp4 (5 condition + 9 generated frames: 2 + 3
    latent frames of the Wan VAE) and NAME_retrieval.safetensors."""
    out = tmp_path / "generate_out"
    out.mkdir()
    write_video(out / "clip.mp4", _noise_video(14, 0), crf=0, pix_fmt="yuv444p")
    save_retrieval(out / "clip_retrieval.safetensors", _record(3, 2, 5, 2, context=2, memory=3))
    return out


# --------------------------------------------------------------------------------------------- the reader
def test_demo_folder_reads_what_demo_and_eval_wrote(demo_folder):
    kind, names = list_samples(demo_folder)
    assert (kind, names) == ("demo", ["sample_00000"])
    sample = load_sample(demo_folder, "sample_00000")
    pred = read_frames(demo_folder / "pred" / "sample_00000.mp4")
    truth = read_frames(demo_folder / "data" / "sample_00000" / "tgt.mp4")
    assert np.array_equal(sample.context, pred[:20]) and np.array_equal(sample.generated, pred[20:])
    assert np.array_equal(sample.truth, truth)
    # cameras: the held-out clip's yaw, read back from data/NAME/camera.json through the pose conversion
    clip = render_clip(load_flatland_model("memory").flatland, 1000, 0)
    yaw = np.array([c["yaw"] for c in sample.cameras])
    assert np.allclose(np.cos(np.radians(yaw - clip.yaw_deg)), 1.0, atol=1e-5)
    # the eval report's per-frame curves and exit/entry events
    report = json.loads((demo_folder / "pred" / "eval" / "metrics.json").read_text())["per_sample"][0]
    assert sample.series["psnr"] == pytest.approx(report["frames"]["psnr"])
    assert sample.events == report["events"] and sample.events


def test_demo_retrieval_is_the_records_last_step_per_block(demo_folder):
    sample = load_sample(demo_folder, "sample_00000")
    record = load_retrieval(demo_folder / "sample_00000_retrieval.safetensors")
    t = 7
    view = sample.retrieval(t)
    assert view["kind"] == "blocks" and view["step"] == record.indices.shape[0] - 1
    assert len(view["blocks"]) == record.indices.shape[1]
    query = 20 + t  # Flatland: one latent frame per video frame
    kt = load_flatland_model("memory").dit.cfg.tokenizer_kernel[0]
    for block in view["blocks"]:
        b = block["block"]
        keep = record.valid[-1, b, 0, query]
        assert [i["memory"] for i in block["items"]] == record.indices[-1, b, 0, query][keep].tolist()
        assert [i["score"] for i in block["items"]] == pytest.approx(record.scores[-1, b, 0, query][keep].tolist())
        for item in block["items"]:  # memory frame j summarises frames kj .. kj + k - 1 (k: tokenizer kernel)
            assert item["frames"] == list(range(kt * item["memory"], kt * item["memory"] + kt))
            assert item["stream"] == ("context" if item["frame"] < 20 else "generated")
    assert sample.retrieval(t, step=0)["blocks"] != view["blocks"]
    with pytest.raises(InputError, match="out of range"):
        sample.retrieval(20)


def test_demo_rollout_folder_shows_each_chunks_record(demo_rollout_folder):
    kind, names = list_samples(demo_rollout_folder)
    assert kind == "demo-rollout"
    sample = load_sample(demo_rollout_folder, names[0])
    records = json.loads((demo_rollout_folder / f"{names[0]}_retrieval.json").read_text())
    assert [(c.start, c.frames) for c in sample.chunks] == [(0, 20), (20, 20)]
    view = sample.retrieval(25)
    assert view["kind"] == "chunk" and view["chunk"] == 1
    assert [r["frame"] for r in view["recent"]] == records[1]["recent"]
    assert [r["frame"] for r in view["selected"]] == records[1]["selected"]
    assert {str(r["frame"]): r["score"] for r in view["retrieved"]} == pytest.approx(records[1]["retrieved"])
    assert len(sample.series["psnr"]) == 40  # computed by the viewer: no eval report here
    assert any("computed by the viewer" in note for note in sample.notes)


def test_generate_folder_maps_wan_latent_frames(generate_folder):
    kind, names = list_samples(generate_folder)
    assert (kind, names) == ("generate", ["clip"])
    sample = load_sample(generate_folder, "clip")
    assert (len(sample.context), len(sample.generated), sample.truth) == (5, 9, None)
    # latent frames: context 0 (frame 0), 1 (frames 1-4); generated 2 (frame 5), 3 (6-9), 4 (10-13)
    assert [sample.latent_to_video(i) for i in range(5)] == [0, 4, 5, 9, 13]
    assert [sample.video_to_latent(f) for f in (0, 1, 4, 5, 6, 9, 10, 13)] == [0, 1, 1, 2, 3, 3, 4, 4]
    record = load_retrieval(generate_folder / "clip_retrieval.safetensors")
    view = sample.retrieval(3)  # video frame 8: latent 3
    block = view["blocks"][1]
    keep = record.valid[-1, 1, 0, 3]
    assert [i["memory"] for i in block["items"]] == record.indices[-1, 1, 0, 3][keep].tolist()
    shown = {0: [0, 4], 1: [5, 9], 2: [13]}  # memory frame j: latent frames 2j, 2j + 1 (the last is alone)
    assert all(i["frames"] == shown[i["memory"]] for b in view["blocks"] for i in b["items"])


def test_rollout_folder_reads_bank_cameras_and_chunk_records(tmp_path):
    out = tmp_path / "rollout_out"
    (out / "chunks").mkdir(parents=True)
    yaw = np.array([0.0, 0.0, 45.0, 90.0, 90.0])  # latent frames: condition 2, chunk 0 two, chunk 1 one
    poses = camera_poses(ue_yaw_matrices(yaw, np.array([100.0, 200.0, 170.0])))
    bank = MemoryBank(out / "bank")
    bank.append(torch.zeros(1, 4, 2, 2, 2), poses[:2])
    records = [
        ChunkRecord(0, 0, [2, 3], [0, 1], [], [0, 1], 4, {"0": 0.5, "1": 0.25}),
        ChunkRecord(1, 7, [4], [0, 1, 2, 3], [0, 1], [2, 3], 5, {"2": 1.0}),
    ]
    bank.append(torch.zeros(1, 4, 2, 2, 2), poses[2:4], records[0].to_json())
    bank.append(torch.zeros(1, 4, 1, 2, 2), poses[4:], records[1].to_json())
    (out / "retrieval.json").write_text(json.dumps([r.to_json() for r in records]))
    write_video(out / "walk.mp4", _noise_video(5 + 5 + 1, 1), crf=0, pix_fmt="yuv444p")
    manifest = {
        "format": "hydra-wm-rollout-1",
        "name": "walk",
        "generation": {"context_frames": 5, "height": 16, "width": 16},
        "chunk_frames": [5, 1],
        "complete": True,
    }
    (out / "rollout.json").write_text(json.dumps(manifest))
    assert list_samples(out) == ("rollout", ["walk"])
    sample = load_sample(out, "walk")
    assert [(c.start, c.frames) for c in sample.chunks] == [(0, 5), (5, 1)]
    # one camera per video frame, from the bank's pose of the latent frame that holds it
    assert [round(c["yaw"]) for c in sample.cameras] == [0, 0, 0, 0, 0, 45, 90, 90, 90, 90, 90]
    assert {(round(c["x"], 3), round(c["y"], 3)) for c in sample.cameras} == {(1.0, 2.0)}
    view = sample.retrieval(5)  # the last chunk: bank frame 4
    assert view["chunk"] == 1 and [r["frame"] for r in view["selected"]] == [0, 4]
    assert [(r["frame"], r["score"]) for r in view["retrieved"]] == [(5, 1.0)]


def test_a_real_rollout_folder(finished):  # noqa: F811 - the 3-chunk `hydra-wm rollout` of test_rollout_cli
    """What `hydra-wm rollout` wrote (tiny checkpoints in the real formats, Wan VAE strides): 9 condition frames,
    chunks of 9, 9 and 5 frames, cameras turning 7 degrees a frame."""
    kind, names = list_samples(finished)
    assert kind == "rollout"
    sample = load_sample(finished, names[0])
    assert (len(sample.context), len(sample.generated)) == (9, 23)
    assert [(c.start, c.frames) for c in sample.chunks] == [(0, 9), (9, 9), (18, 5)]
    # a video frame shows the camera of its latent frame: frame 4j of each part (condition, then each chunk)
    starts = [0, 9, 18, 27]
    for start, frames in zip(starts, [9, 9, 9, 5], strict=True):
        for j in range((frames - 1) // 4 + 1):
            frame = start + 4 * j
            assert np.cos(np.radians(sample.cameras[frame]["yaw"] - 7.0 * frame)) == pytest.approx(1.0, abs=1e-6)
    records = json.loads((finished / "retrieval.json").read_text())
    view = sample.retrieval(20)  # chunk 2
    assert view["chunk"] == 2 and view["kind"] == "chunk"
    assert [r["frame"] for r in view["recent"]] == [sample.latent_to_video(f) for f in records[2]["recent"]]


def test_a_real_rollout_folder_with_retrieval_records(checkpoints, examples, cameras, tmp_path):  # noqa: F811
    """`hydra-wm rollout --save-retrieval`: each chunk's record of every step and block, by bank frame."""
    from test_rollout_cli import rollout_args

    out = tmp_path / "out"
    assert main(rollout_args(checkpoints, examples, cameras, out, "--save-retrieval")) == 0
    sample = load_sample(out, list_samples(out)[1][0])
    records = json.loads((out / "retrieval.json").read_text())
    record = load_retrieval(out / "chunks" / "chunk_0001_retrieval.safetensors")
    view = sample.retrieval(13)  # chunk 1, its video frame 4: its latent frame 1
    assert view["kind"] == "blocks" and view["chunk"] == 1
    dit = records[1]["context"] + records[1]["target"]
    query = len(records[1]["context"]) + 1
    assert dit[query] == sample.video_to_latent(9 + 13)
    for block in view["blocks"]:
        keep = record.valid[-1, block["block"], 0, query]
        memory = record.indices[-1, block["block"], 0, query][keep].tolist()
        assert [i["memory"] for i in block["items"]] == memory
        for item, j in zip(block["items"], memory, strict=True):  # memory frame j: DiT frames 2j, 2j + 1
            expected = [sample.latent_to_video(dit[i]) for i in range(2 * j, min(2 * j + 2, len(dit)))]
            assert item["frames"] == expected


def test_a_real_generate_folder(checkpoints, examples, tmp_path):  # noqa: F811
    """`hydra-wm generate --save-retrieval` (tiny checkpoints in the real formats): 9 condition + 9 generated frames,
    3 + 3 latent frames; the context length comes from the retrieval record."""
    from test_generate_cli import small_args

    out = tmp_path / "out"
    extra = ("--samples", "1", "--hydra-ckpt", str(checkpoints / "hydra.ckpt"), "--save-retrieval", "--cfg", "1")
    assert main(small_args(checkpoints, out, str(examples), *extra)) == 0
    kind, names = list_samples(out)
    assert (kind, names) == ("generate", ["1"])
    sample = load_sample(out, "1")
    assert (len(sample.context), len(sample.generated)) == (9, 9)
    record = load_retrieval(out / "1_retrieval.safetensors")
    view = sample.retrieval(5)  # video frame 14: latent 3 + (5 + 3) // 4 = 5
    assert sample.video_to_latent(14) == 5
    keep = record.valid[-1, 0, 0, 5]
    assert [i["memory"] for i in view["blocks"][0]["items"]] == record.indices[-1, 0, 0, 5][keep].tolist()


def test_bad_folders_and_videos_are_one_line_naming_the_file(tmp_path, demo_folder):
    with pytest.raises(InputError, match="not a result folder"):
        list_samples(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        list_samples(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(demo_folder, broken)
    (broken / "data" / "sample_00000" / "tgt.mp4").unlink()
    with pytest.raises(InputError, match=r"tgt\.mp4: file not found"):
        load_sample(broken, "sample_00000")
    (broken / "data" / "sample_00000" / "tgt.mp4").write_bytes(b"not a video at all")
    with pytest.raises(InputError, match=r"tgt\.mp4") as caught:
        load_sample(broken, "sample_00000")
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="no sample 'nope'"):
        load_sample(demo_folder, "nope")


def test_the_page_loads_nothing_from_outside():
    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and 'src="//' not in text, path.name


# -------------------------------------------------------------------------------------------------- server
@pytest.fixture
def serve():
    servers = []

    def start(viewer: Viewer) -> str:
        server = make_server(viewer, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(url: str, data: dict | None = None):
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _q(value) -> str:
    return urllib.request.quote(str(value))


def test_server_answers_bad_requests_in_the_page_and_keeps_serving(serve, demo_folder, tmp_path):
    from PIL import Image

    base = serve(Viewer(str(demo_folder)))
    status, kind, body = _get(f"{base}/")
    assert status == 200 and kind.startswith("text/html") and b"viewer.js" in body
    status, _, body = _get(f"{base}/api/open?folder={_q(tmp_path)}")
    assert status == 400 and "not a result folder" in json.loads(body)["error"]
    broken = tmp_path / "broken"
    shutil.copytree(demo_folder, broken)
    (broken / "pred" / "sample_00000.mp4").write_bytes(b"\x00" * 100)
    status, _, body = _get(f"{base}/api/sample?folder={_q(broken)}&sample=sample_00000")
    assert status == 400 and "sample_00000.mp4" in json.loads(body)["error"]
    status, _, body = _get(f"{base}/api/frame?folder={_q(demo_folder)}&sample=sample_00000&stream=truth&t=99")
    assert status == 400 and "0..19" in json.loads(body)["error"]
    status, _, body = _get(f"{base}/api/sample?folder={_q(demo_folder)}")
    assert status == 400 and "sample" in json.loads(body)["error"]
    assert _get(f"{base}/../../etc/passwd")[0] == 404
    # still serving, and the frames are the folder's pixels
    status, _, body = _get(f"{base}/api/open?folder={_q(demo_folder)}")
    assert status == 200 and json.loads(body)["samples"] == ["sample_00000"]
    status, kind, body = _get(f"{base}/api/frame?folder={_q(demo_folder)}&sample=sample_00000&stream=generated&t=3")
    assert status == 200 and kind == "image/png"
    pred = read_frames(demo_folder / "pred" / "sample_00000.mp4")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), pred[23])
    info = json.loads(_get(f"{base}/api/sample?folder={_q(demo_folder)}&sample=sample_00000")[2])
    assert (info["context_frames"], info["generated_frames"], info["truth"]) == (20, 20, True)
    assert len(info["cameras"]) == 40 and info["events"] and info["retrieval_steps"] == 4


def test_command_port_in_use_and_bad_folder_are_one_line_exit_2(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["viewer", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hydra-wm viewer: error: port {port} on 127.0.0.1 is in use; pass --port with a free one"]
    assert main(["viewer", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a result folder" in err[0]
    assert main(["viewer", "--port", "70000"]) == 2


def test_command_serves_until_ctrl_c_and_exits_0(demo_folder):
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "hydra_wm", "viewer", str(demo_folder), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that runs the suite in the background (`make test &`) starts it with SIGINT ignored, and Python
        # keeps an ignored SIGINT ignored: give the server the disposition a terminal's Ctrl+C meets.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = process.stdout.readline()
        assert line.startswith(f"hydra-wm viewer: demo folder {demo_folder} (1 sample(s)) at http://127.0.0.1:")
        base = line.split(" at ")[1].split()[0].rstrip("/")
        assert json.loads(_get(f"{base}/api/config")[2])["folder"] == str(demo_folder)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and out.strip() == "hydra-wm viewer: stopped" and err == ""


# ------------------------------------------------------------------------------------------------------ live
def test_steering_turns_through_a_half_way_frame():
    assert steer(10.0, "left", 4).tolist() == [-12.5, -35.0, -35.0, -35.0]
    assert steer(10.0, "right", 3).tolist() == [32.5, 55.0, 55.0]
    assert steer(10.0, "hold", 2).tolist() == [10.0, 10.0]
    with pytest.raises(InputError, match="action"):
        steer(0.0, "jump", 2)


def test_live_chunk_is_the_rollout_apis_chunk(one_thread):
    session = LiveSession(chunk_frames=4, steps=3)
    chunk = session.step("left")
    assert (chunk.start, chunk.frames, len(session.frames)) == (20, 4, 24)
    # the same chunk straight from the rollout API, with the steered cameras
    model = session.model
    clip = render_clip(model.flatland, 1000, 0)
    rollout = start_rollout(model, clip, session.history, num_steps=3)
    poses = camera_poses(ue_yaw_matrices(steer(clip.yaw_deg[19], "left", 4), clip.camera_to_world[0, :3, 3]))
    expected = ((rollout.step(poses).video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert np.array_equal(np.stack(session.frames[20:]), expected.permute(1, 2, 3, 0).numpy())
    view = session.retrieval(22)
    assert view["kind"] == "blocks" and len(view["blocks"]) == model.dit.cfg.num_layers
    assert session.state()["bank_frames"] == 24


def test_live_api_steps_grow_the_bank_and_refuse_bad_actions(serve, one_thread):
    base = serve(Viewer(live_options={"chunk_frames": 3, "steps": 2}))
    state = json.loads(_get(f"{base}/api/live/state")[2])
    assert (state["frames"], state["bank_frames"], state["chunks"]) == (20, 20, [])
    status, _, body = _get(f"{base}/api/live/step", {"action": "sideways"})
    assert status == 400 and "action" in json.loads(body)["error"]
    state = json.loads(_get(f"{base}/api/live/step", {"action": "right"})[2])
    state = json.loads(_get(f"{base}/api/live/step", {"action": "hold"})[2])
    assert (state["frames"], state["bank_frames"]) == (26, 26)
    assert [c["action"] for c in state["chunks"]] == ["right", "hold"]
    assert all(c["seconds"] > 0 for c in state["chunks"])
    yaw = [c["yaw"] for c in state["cameras"]]
    assert np.cos(np.radians(yaw[-1] - yaw[19] - 45.0)) == pytest.approx(1.0)
    view = json.loads(_get(f"{base}/api/live/retrieval?t=24")[2])
    assert view["chunk"] == 1 and view["blocks"][0]["items"]
    assert _get(f"{base}/api/live/frame?t=25")[1] == "image/png"
    status, _, body = _get(f"{base}/api/live/frame?t=26")
    assert status == 400 and "0..25" in json.loads(body)["error"]
    state = json.loads(_get(f"{base}/api/live/reset", {"index": 1})[2])
    assert (state["frames"], state["index"], state["epoch"]) == (20, 1, 2)


# --------------------------------------------------------------------------------------------------- browser
def _browser():
    """Playwright's Chromium driver pointed at Debian's chromium; the reason to skip when there is none."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests: playwright not installed (pip install -e '.[dev]')")
    if not CHROMIUM.is_file():
        pytest.skip(f"browser tests: no {CHROMIUM} (apt-get install -y chromium)")
    return sync_playwright


def test_browser_plays_a_folder_and_steps_the_live_world(serve, demo_folder, tmp_path, one_thread):
    sync_playwright = _browser()
    base = serve(Viewer(str(demo_folder), live_options={"chunk_frames": 5, "steps": 4}))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        # results: the folder opens, frames show, the retrieval panel follows the timeline
        page.wait_for_selector("#retrieval .block")
        loaded = "(id) => document.getElementById(id).complete && document.getElementById(id).naturalWidth === 32"
        images = ", ".join(f"{loaded}('img-{name}')" for name in ("context", "generated", "truth"))
        page.wait_for_function(f"[{images}].every(Boolean)")
        assert page.get_attribute("#retrieval", "data-frame") == "20"
        page.click("#play-button")
        page.wait_for_function("Number(document.getElementById('timeline').value) >= 3")
        page.click("#play-button")
        page.wait_for_function("Number(document.getElementById('retrieval').dataset.frame) > 20")
        assert "t=0" not in page.get_attribute("#img-generated", "src")
        page.screenshot(path=str(shots / "results.png"), full_page=True)
        # a folder that is not a result folder: a message in the page, and the server keeps serving
        page.fill("#folder-input", str(tmp_path))
        page.click("#open-button")
        page.wait_for_selector("#error:not([hidden])")
        assert "not a result folder" in page.inner_text("#error")
        page.fill("#folder-input", str(demo_folder))
        page.click("#open-button")
        page.wait_for_selector("#error", state="hidden")
        page.wait_for_selector("#retrieval .block")
        # live play: two steps, by button and by key
        page.click("#tab-live")
        page.wait_for_function("document.querySelectorAll('#bank .thumb').length === 20")
        before = page.inner_html("#live-retrieval")
        page.click("#live-left")
        page.wait_for_function("document.querySelectorAll('#bank .thumb').length === 25")
        page.wait_for_selector("#live-retrieval .block")
        first = page.inner_html("#live-retrieval")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.querySelectorAll('#bank .thumb').length === 30")
        page.wait_for_function("document.getElementById('live-retrieval').dataset.frame === '25'")
        second = page.inner_html("#live-retrieval")
        assert before != first != second
        new = "[...document.querySelectorAll('#bank .thumb.new img')]"
        page.wait_for_function(f"{new}.length === 5 && {new}.every(i => i.complete && i.naturalWidth === 32)")
        assert page.locator("#live-times li").count() == 2
        page.screenshot(path=str(shots / "live.png"), full_page=True)
        browser.close()
    assert errors == []
    assert (shots / "results.png").stat().st_size > 10_000 and (shots / "live.png").stat().st_size > 10_000
