"""One Flatland clip: camera and subject trajectories, rendering, exact per-frame truth and UE cameras.

Geometry. The camera stands still and only turns (yaw). Its view is a window of the panorama: view column
``x`` shows panorama column ``(yaw_px - W // 2 + x) mod P`` (a cylindrical projection, so a returning camera
sees exactly the pixels it saw before). Positive yaw turns the camera to its right, as in Unreal Engine,
and the scenery slides left. Yaw is quantised to whole panorama columns so images and cameras agree exactly.

Camera path: a cosine pan ``yaw(t) = centre + dir * A * cos(pi * (t - t0) / S)`` whose extreme ``t0`` and
half period ``S`` are chosen so that one whole sweep (one end of the range to the other) lies inside the
context. So every view the target shows was already seen in the context, and the target's views are, by its
end, ones the context saw many frames earlier: a local window cannot supply them, memory must.
With ``camera_motion="glance"`` the camera instead holds one of a few token-aligned headings, turns quickly to
another, holds, ...; the context holds every heading, and the target turns away from the last context heading at
once and never returns to it. A target view is then, pixel for pixel, a view the context held before its end, at
the same place in the frame: copying it needs the frames with the same camera, not a camera-dependent shift.

Subjects walk along the ground at their own speed (turning around at most once), independent of the camera.
A clip is kept only if (a) every subject is seen whole in at least two context frames, so its appearance is
known, and (b) some subject leaves the view and re-enters during the target after `out_of_view_frames` frames
wholly out of view, with at least two target frames left to score it. The generator must then both remember
what the subject looks like and keep track of where it went while unseen ("out of sight but not out of mind").

How much memory is needed (measured on 100 clips, seed 0): a centred window of 5 frames reaches 2 frames back.
With `small` (20+20 frames, no temporal compression) ~60% of target pixels show background the last 2 context
frames never showed but earlier context frames did; with `default` at Wan's stride 4 (2 latent = 8 frames
back) ~41%. Every target view lies inside the range the context swept, so none of it is unseeable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .config import FlatlandConfig
from .scenery import PACKED, SCENE_STYLES, pack_rgb, render_panorama, unpack_rgb
from .subjects import CATALOGUE, WALK_PHASES, SubjectKind, catalogue_colour_pairs_disjoint, render_sprite

CAMERA_HEIGHT_CM = 170.0
MIN_CONTEXT_SIGHTINGS = 2  # context frames in which each subject must be wholly in view


@dataclass
class SubjectPath:
    """A subject's placement over the whole clip (context then target frames)."""

    kind: SubjectKind
    sprite: np.ndarray
    """``[2, 4, h, w]`` codes (see `subjects.render_sprite`)."""
    left: np.ndarray
    """``[T]`` int view column of the sprite's left edge."""
    top: int
    """View row of the sprite's top edge (feet on the ground, constant)."""
    facing: np.ndarray
    """``[T]`` int 0 facing right, 1 facing left."""
    phase: np.ndarray
    """``[T]`` int walk phase."""
    azimuth_deg: np.ndarray
    """``[T]`` azimuth of the subject's centre on the panorama, degrees."""


@dataclass
class FlatlandClip:
    """A rendered clip with its truth. Frame axes cover context then target (``T = Tc + Tt``)."""

    frames: np.ndarray
    """``[T, H, W, 3]`` uint8 RGB."""
    labels: np.ndarray
    """``[T, H, W]`` uint8: 0 background, ``s + 1`` where subject s is the visible surface."""
    camera_to_world: np.ndarray
    """``[T, 4, 4]`` float64 Unreal camera-to-world (columns forward, right, up, position; cm)."""
    yaw_deg: np.ndarray
    """``[T]`` camera yaw in degrees (Unreal world yaw)."""
    in_view: np.ndarray
    """``[T, S]`` bool: some pixel of subject s lies inside the frame (before occlusion by other subjects)."""
    visible_px: np.ndarray
    """``[T, S]`` int: pixels where subject s is the visible surface."""
    boxes: np.ndarray
    """``[T, S, 4]`` int (x0, y0, x1, y1), end-exclusive, of the visible pixels; -1 where none."""
    centroids: np.ndarray
    """``[T, S, 2]`` float (x, y) mean pixel-centre position of the visible pixels; NaN where none."""
    subjects: list[SubjectKind]
    sprite_sizes: list[tuple[int, int]]
    """(h, w) of each subject's sprite in pixels."""
    style: str
    azimuth_deg: np.ndarray
    """``[T, S]`` world azimuth of each subject's centre in degrees (also while out of view)."""
    landmarks: list[str]
    events: list[dict]
    """Exit-entry events, see `find_events`."""
    context_frames: int
    seed: list[int] = field(default_factory=list)
    camera_motion: str = "pan"
    """How the camera moved (`FlatlandConfig.camera_motion`): "pan" sweeps, "glance" holds headings and turns."""

    @property
    def masks(self) -> np.ndarray:
        """``[T, H, W, 3]`` uint8: every subject pure red (255, 0, 0) on black, as HM-World's mask videos."""
        out = np.zeros(self.frames.shape, dtype=np.uint8)
        out[..., 0] = np.where(self.labels > 0, 255, 0)
        return out

    def caption(self) -> str:
        """One line in words: scene style, landmarks, each subject and how it walks."""
        landmarks = ", ".join(sorted(set(self.landmarks)))
        motion = "turns between a few headings" if self.camera_motion == "glance" else "pans back and forth"
        parts = [f"A camera {motion} across {SCENE_STYLES[self.style].words} with {landmarks}"]
        for s, kind in enumerate(self.subjects):
            steps = np.sign(np.diff(self.azimuth_deg[:, s]))
            if not steps.any():
                parts.append(f"{kind.words} stands still")
                continue
            first, last = ("left" if d < 0 else "right" for d in (steps[0], steps[-1]))
            parts.append(f"{kind.words} walks {first}" + (f" then turns {last}" if first != last else ""))
        return "; ".join(parts) + "."


def _sample_camera(config: FlatlandConfig, rng: np.random.Generator) -> np.ndarray:
    """``[T]`` int panorama column under the view centre (the camera yaw in panorama pixels)."""
    if config.camera_motion == "glance":
        return _sample_glance(config, rng)
    if config.camera_motion == "tour":
        return _sample_tour(config, rng)
    P, Tc = config.panorama_width, config.context_frames
    amplitude = rng.uniform(*config.pan_range_deg) / 2.0 * P / 360.0
    half_lo, half_hi = config.half_sweep_range()
    half_period = int(rng.integers(half_lo, half_hi + 1))
    start = int(rng.integers(0, Tc - half_period))  # an extreme inside the context, one sweep after it
    direction = rng.choice([-1.0, 1.0])
    t = np.arange(config.total_frames)
    centre = rng.uniform(0, P)
    yaw = centre + direction * amplitude * np.cos(np.pi * (t - start) / half_period)
    return _on_camera_grid(yaw, config)


def _on_camera_grid(yaw: np.ndarray, config: FlatlandConfig) -> np.ndarray:
    """Yaw in panorama pixels -> ``[T]`` int columns, rounded to whole `camera_step_px` and wrapped."""
    step = config.camera_step_px
    return (np.round(np.asarray(yaw) / step) * step).astype(np.int64) % config.panorama_width


def _sample_glance(config: FlatlandConfig, rng: np.random.Generator) -> np.ndarray:
    """The `glance` camera: hold a heading, turn to another, hold...; the context holds every heading."""
    P, T, Tc = config.panorama_width, config.total_frames, config.context_frames
    step = config.camera_step_px
    spacing = max(round(config.glance_spacing_deg * P / 360.0 / step), 1) * step
    count = int(rng.uniform(*config.pan_range_deg) // config.glance_spacing_deg) + 1
    centre = int(rng.integers(0, P // step)) * step
    headings = centre + (np.arange(count) - (count - 1) // 2) * spacing
    dwell, turns = config.glance_dwell_frames, config.glance_turn_frames
    for _ in range(config.max_attempts):
        yaw, held, current, avoid = [], set(), int(rng.integers(count)), None
        while len(yaw) < T:
            hold = int(rng.integers(dwell[0], dwell[1] + 1))
            if len(yaw) < Tc:
                held.add(current)
                if len(yaw) + hold >= Tc and config.glance_target_avoids_last:
                    hold, avoid = Tc - len(yaw), current  # the target turns away at once ...
            yaw += [float(headings[current])] * hold
            # ... and never comes back to the last context heading
            following = int(rng.choice([i for i in range(count) if i not in (current, avoid)]))
            a, b = headings[current], headings[following]
            turn = int(rng.integers(turns[0], turns[1] + 1))
            if config.glance_target_avoids_last and len(yaw) < Tc <= len(yaw) + turn:
                turn = 0  # the context ends on a held heading, not inside a turn
            between = [a + (b - a) * (j + 1) / (turn + 1) for j in range(turn)]
            if avoid is not None:  # a turn across the avoided heading skips that frame
                between = [y for y in between if abs(y - headings[avoid]) >= step / 2]
            yaw += between
            current = following
        if len(held) == count:
            break
    else:
        raise InputError(
            f"flatland: the glance camera did not hold all {count} headings within the {Tc} context frames in "
            f"{config.max_attempts} draws; lengthen context_frames or shorten glance_dwell_frames"
        )
    return _on_camera_grid(yaw[:T], config)


def _sample_tour(config: FlatlandConfig, rng: np.random.Generator) -> np.ndarray:
    """The `tour` camera on a ring of headings all around: glance between the two headings of a sector, then move
    two headings on (keeping the direction with `tour_keep_direction`), or back home (the context's sector) with
    `tour_home_probability`. The context holds both home headings, and the first stay outlasts it."""
    P, T, Tc = config.panorama_width, config.total_frames, config.context_frames
    spacing = config.heading_spacing_px
    count = P // spacing
    origin = int(rng.integers(0, P // config.camera_step_px)) * config.camera_step_px
    dwell, turns, stays = config.glance_dwell_frames, config.glance_turn_frames, config.tour_stay_frames

    def turn_frames(a: int, b: int) -> list[float]:
        delta = (b - a) % count
        delta = delta - count if delta > count // 2 else delta  # the short way round
        turn = int(rng.integers(turns[0], turns[1] + 1))
        return [origin + (a + delta * (j + 1) / (turn + 1)) * spacing for j in range(turn)]

    for _ in range(config.max_attempts):
        yaw: list[float] = []
        held: set[int] = set()
        centre, current, direction = 0, int(rng.integers(0, 2)), int(rng.choice([-1, 1]))
        while len(yaw) < T:
            end = len(yaw) + int(rng.integers(stays[0], stays[1] + 1))
            if not yaw:
                end = max(end, Tc + stays[0])  # the home stay covers the context and goes on into the target
            while len(yaw) < min(end, T):
                if len(yaw) < Tc:
                    held.add(current % count)
                yaw += [float(origin + current * spacing)] * int(rng.integers(dwell[0], dwell[1] + 1))
                following = centre + 1 if current == centre else centre  # the sector's other heading
                yaw += turn_frames(current, following)
                current = following
            if centre % count and rng.random() < config.tour_home_probability:
                centre = 0
            else:
                direction = direction if rng.random() < config.tour_keep_direction else -direction
                centre += 2 * direction
            following = centre + int(rng.integers(0, 2))
            yaw += turn_frames(current, following)
            current = following
        if len(held) == 2:
            break
    else:
        raise InputError(
            f"flatland: the tour camera did not hold both home headings within the {Tc} context frames in "
            f"{config.max_attempts} draws; lengthen context_frames or shorten glance_dwell_frames"
        )
    return _on_camera_grid(yaw[:T], config)


def _walk_phase(distance: np.ndarray, sprite_width: int) -> np.ndarray:
    """Walk phase after walking `distance` panorama pixels: one phase per half body width."""
    return (np.floor(distance / max(sprite_width / 2.0, 1.0)) % WALK_PHASES).astype(np.int64)


def _sample_subject(
    config: FlatlandConfig, kind: SubjectKind, yaw_px: np.ndarray, horizon: int, rng: np.random.Generator
) -> SubjectPath:
    H, W, P, T = config.height, config.width, config.panorama_width, config.total_frames
    sprite = render_sprite(kind, round(rng.uniform(*config.subject_height) * H))
    h, w = sprite.shape[2:]
    feet = int(rng.integers(min(max(horizon + h // 2, int(0.8 * H)), H - 1), H))  # bottom row, on the ground
    top = max(feet - h + 1, 0)
    # Start anywhere the camera looks during the context, walk at a constant speed, turn around at most once.
    seen = (yaw_px[: config.context_frames, None] + np.arange(-W // 2, W - W // 2)[None, :]) % P
    start = float(rng.choice(seen.ravel())) + rng.random()
    speed = rng.uniform(*config.subject_speed_deg) * P / 360.0
    step = np.full(T, speed * rng.choice([-1.0, 1.0]))
    if rng.random() < 0.5:
        step[int(rng.integers(1, T)) :] *= -1.0
    step[0] = 0.0
    azimuth_px = start + np.cumsum(step)
    distance = np.cumsum(np.abs(step))
    phase = _walk_phase(distance, w)
    facing = (step < 0).astype(np.int64)
    facing[0] = facing[1]
    # View coordinate of the subject's centre: wrapped offset from the view centre.
    offset = (azimuth_px - yaw_px + P / 2.0) % P - P / 2.0
    centre_x = offset + W // 2
    left = np.round(centre_x - w / 2.0).astype(np.int64)
    return SubjectPath(kind, sprite, left, top, facing, phase, azimuth_px * 360.0 / P)


SUBJECT_MOTIONS = ("true", "frozen", "walk-on")
"""`render_clip`'s `subject_motion`: the world's own, or one of the two "what if" target halves of the oracle
baselines (`evaluation.baselines`)."""


def _replace_target_motion(path: SubjectPath, yaw_px: np.ndarray, config: FlatlandConfig, motion: str) -> SubjectPath:
    """`path` with its target frames replaced: ``frozen`` stands where the last context frame had it (same pose);
    ``walk-on`` keeps walking at its last context step (speed and direction; no later turn), its legs moving on.
    The context frames are unchanged."""
    Tc, T, W, P = config.context_frames, config.total_frames, config.width, config.panorama_width
    w = path.sprite.shape[3]
    azimuth_px = path.azimuth_deg * P / 360.0
    last_step = azimuth_px[Tc - 1] - azimuth_px[Tc - 2]
    after = np.arange(1, T - Tc + 1)
    azimuth_px, facing, phase = azimuth_px.copy(), path.facing.copy(), path.phase.copy()
    facing[Tc:] = facing[Tc - 1]
    if motion == "frozen":
        azimuth_px[Tc:] = azimuth_px[Tc - 1]
        phase[Tc:] = phase[Tc - 1]
    else:  # walk-on: the same walk-cycle rule as `_sample_subject`
        azimuth_px[Tc:] = azimuth_px[Tc - 1] + last_step * after
        phase[Tc:] = _walk_phase(np.abs(np.diff(azimuth_px[:Tc])).sum() + abs(last_step) * after, w)
    offset = (azimuth_px - yaw_px + P / 2.0) % P - P / 2.0
    left = np.round(offset + W // 2 - w / 2.0).astype(np.int64)
    left[:Tc] = path.left[:Tc]
    return SubjectPath(path.kind, path.sprite, left, path.top, facing, phase, azimuth_px * 360.0 / P)


def sprite_in_view(path: SubjectPath, width: int, *, whole: bool = False) -> np.ndarray:
    """``[T]`` bool: some sprite column with a pixel overlaps the frame (exact, see `subjects`);
    with `whole`, every such column does."""
    occupied = (path.sprite > 0).any(axis=2)  # (2, 4, w)
    first = occupied.argmax(axis=-1)
    last = occupied.shape[-1] - 1 - occupied[..., ::-1].argmax(axis=-1)
    lo = path.left + first[path.facing, path.phase]
    hi = path.left + last[path.facing, path.phase]
    if whole:
        return (lo >= 0) & (hi <= width - 1)
    return (hi >= 0) & (lo <= width - 1)


def find_events(in_view: np.ndarray, context_frames: int) -> list[dict]:
    """Exit-entry events from ``[T, S]`` in-view flags.

    An event is a maximal run of out-of-view frames with the subject in view just before and just after:
    ``exit`` is the first frame out of view, ``entry`` the first frame back in view; frame indices are
    clip-global (context frames first). Runs touching the clip's start or end are not events.
    """
    events = []
    for s in range(in_view.shape[1]):
        seen = in_view[:, s]
        changes = np.flatnonzero(np.diff(seen.astype(np.int8)))
        exits = [int(c) + 1 for c in changes if seen[c]]
        for exit_frame in exits:
            later = np.flatnonzero(seen[exit_frame:])
            if later.size:
                entry = exit_frame + int(later[0])
                events.append({"subject": s, "exit": exit_frame, "entry": entry, "out_of_view": entry - exit_frame})
    return sorted(events, key=lambda e: (e["entry"], e["subject"]))


def reentry_mask(in_view: np.ndarray, context_frames: int) -> np.ndarray:
    """``[T, S]`` in-view flags → ``[T - context_frames, S]`` bool: target frames after a re-entry.

    For every event whose entry lies in the target, the frames from the entry until the subject next leaves
    the view (or the clip ends). These are the frames where the generator has to remember the subject.
    """
    out = np.zeros((in_view.shape[0] - context_frames, in_view.shape[1]), dtype=bool)
    for event in find_events(in_view, context_frames):
        if event["entry"] >= context_frames:
            s, start = event["subject"], event["entry"]
            gone = np.flatnonzero(~in_view[start:, s])
            stop = start + (int(gone[0]) if gone.size else in_view.shape[0] - start)
            out[start - context_frames : stop - context_frames, s] = True
    return out


def _events_ok(config: FlatlandConfig, whole_in_view: np.ndarray, events: list[dict]) -> bool:
    Tc, T = config.context_frames, config.total_frames
    if (whole_in_view[:Tc].sum(axis=0) < MIN_CONTEXT_SIGHTINGS).any():
        return False
    low, high = config.out_of_view_frames
    return any(Tc <= e["entry"] <= T - 2 and low <= e["out_of_view"] <= high for e in events)


def _draw(config: FlatlandConfig, panorama: np.ndarray, yaw_px: np.ndarray, paths: list[SubjectPath]):
    """Render frames and labels of all frames at once: one gather per subject, one for the final pixels.

    `panorama` is packed uint32 ``[H, P]``. Each pixel gets an index into [panorama pixels ; subject colours],
    so the frames come out of a single gather of 4-byte words.
    """
    H, W, P, T = config.height, config.width, config.panorama_width, config.total_frames
    columns = (yaw_px[:, None] - W // 2 + np.arange(W)[None, :]) % P  # (T, W)
    colour_index = np.zeros((T, H, W), dtype=np.uint8)  # 0 background, 1 + 2 s + (code - 1) subject colours
    palette = np.zeros(1 + 2 * len(paths), dtype=PACKED)
    in_frame_px = np.zeros((T, len(paths)), dtype=np.int64)
    # Farther subjects (feet higher up the frame) first, so nearer ones cover them.
    for s in sorted(range(len(paths)), key=lambda i: paths[i].top + paths[i].sprite.shape[2]):
        path = paths[s]
        h, w = path.sprite.shape[2:]
        palette[1 + 2 * s : 3 + 2 * s] = [pack_rgb(c) for c in path.kind.rgb]
        rows = slice(path.top, min(path.top + h, H))
        local_x = np.arange(W)[None, :] - path.left[:, None]  # (T, W)
        codes = path.sprite[
            path.facing[:, None, None],
            path.phase[:, None, None],
            np.arange(rows.stop - rows.start)[None, :, None],
            np.clip(local_x, 0, w - 1)[:, None, :],
        ]  # (T, rows, W)
        codes[np.broadcast_to(((local_x < 0) | (local_x >= w))[:, None, :], codes.shape)] = 0
        in_frame_px[:, s] = np.count_nonzero(codes, axis=(1, 2))
        band = colour_index[:, rows]
        np.copyto(band, (2 * s + codes).astype(np.uint8), where=codes > 0)
    source = np.concatenate([panorama.ravel(), palette[1:]])  # (H * P + 2 S,)
    pixel = np.arange(H, dtype=np.int64)[None, :, None] * P + columns[:, None, :]  # (T, H, W)
    pixel = np.where(colour_index > 0, H * P - 1 + colour_index.astype(np.int64), pixel)
    frames = unpack_rgb(source[pixel])  # (T, H, W, 3)
    labels = ((colour_index + 1) // 2).astype(np.uint8)
    return frames, labels, in_frame_px


def _truth(labels: np.ndarray, num_subjects: int):
    """Visible pixel counts, boxes and centroids per frame and subject, vectorised over frames."""
    T, H, W = labels.shape
    counts = np.zeros((T, num_subjects), dtype=np.int64)
    boxes = np.full((T, num_subjects, 4), -1, dtype=np.int64)
    centroids = np.full((T, num_subjects, 2), np.nan)
    ys, xs = np.arange(H) + 0.5, np.arange(W) + 0.5
    for s in range(num_subjects):
        mask = labels == s + 1
        count = mask.sum(axis=(1, 2))
        rows, cols = mask.any(axis=2), mask.any(axis=1)  # (T, H), (T, W)
        seen = count > 0
        counts[:, s] = count
        boxes[seen, s] = np.stack(
            [cols.argmax(1), rows.argmax(1), W - cols[:, ::-1].argmax(1), H - rows[:, ::-1].argmax(1)], axis=1
        )[seen]
        with np.errstate(invalid="ignore", divide="ignore"):
            cx = (mask.sum(axis=1) * xs).sum(axis=1) / count
            cy = (mask.sum(axis=2) * ys).sum(axis=1) / count
        centroids[seen, s] = np.stack([cx, cy], axis=1)[seen]
    return counts, boxes, centroids


def ue_yaw_matrices(yaw_deg: np.ndarray, position_cm: np.ndarray) -> np.ndarray:
    """``[T, 4, 4]`` Unreal camera-to-world matrices for a camera turning about the up axis Z.

    Column-vector form: columns are the forward (X), right (Y) and up (Z) axes in world coordinates, then the
    position in cm. Positive yaw turns forward towards right, as Unreal's `FRotator` yaw does.
    """
    yaw = np.deg2rad(yaw_deg)
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.zeros((len(yaw), 4, 4))
    out[:, 0, 0], out[:, 1, 0] = c, s  # forward
    out[:, 0, 1], out[:, 1, 1] = -s, c  # right
    out[:, 2, 2] = 1.0  # up
    out[:, :3, 3] = position_cm
    out[:, 3, 3] = 1.0
    return out


def render_clip(config: FlatlandConfig, seed: int, index: int = 0, *, subject_motion: str = "true") -> FlatlandClip:
    """Render clip `index` of the dataset with seed `seed`; equal (config, seed, index) give equal clips.

    `subject_motion` other than ``"true"`` changes only what the subjects do in the target frames (`frozen`:
    they stand where the last context frame had them; `walk-on`: they keep their last context step): the same
    scenery, cameras and context, the "what if" clips of the oracle baselines. Events and truth then describe
    that clip (its subjects may, e.g., never re-enter).
    """
    if subject_motion not in SUBJECT_MOTIONS:
        known = ", ".join(SUBJECT_MOTIONS)
        raise InputError(f"flatland subject_motion: expected one of {known}, got {subject_motion!r}")
    rng = np.random.default_rng([int(seed), int(index)])
    P = config.panorama_width
    # 1. scenery
    style_name = str(rng.choice(config.scene_styles))
    panorama, horizon, landmarks = render_panorama(SCENE_STYLES[style_name], config.height, P, rng)
    # 2. subjects from the catalogue with pairwise distinct colours
    count = int(rng.integers(config.num_subjects[0], config.num_subjects[1] + 1))
    while True:
        chosen = [int(i) for i in rng.choice(len(CATALOGUE), size=count, replace=False)]
        if catalogue_colour_pairs_disjoint(chosen):
            break
    kinds = [CATALOGUE[i] for i in chosen]
    # 3. camera and subject paths, redrawn until the clip holds the exit-entry event we need
    for _ in range(config.max_attempts):
        yaw_px = _sample_camera(config, rng)
        paths = [_sample_subject(config, kind, yaw_px, horizon, rng) for kind in kinds]
        in_view = np.stack([sprite_in_view(p, config.width) for p in paths], axis=1)  # (T, S)
        whole = np.stack([sprite_in_view(p, config.width, whole=True) for p in paths], axis=1)
        events = find_events(in_view, config.context_frames)
        if _events_ok(config, whole, events):
            break
    else:
        raise InputError(
            f"flatland: no clip with an exit-entry event after {config.max_attempts} draws (seed {seed}, "
            f"index {index}); widen out_of_view_frames {config.out_of_view_frames} or pan_range_deg"
        )
    if subject_motion != "true":
        paths = [_replace_target_motion(p, yaw_px, config, subject_motion) for p in paths]
        in_view = np.stack([sprite_in_view(p, config.width) for p in paths], axis=1)
        events = find_events(in_view, config.context_frames)
    # 4. pixels and truth
    frames, labels, in_frame_px = _draw(config, panorama, yaw_px, paths)
    assert np.array_equal(in_frame_px > 0, in_view), "sprite column extents disagree with drawn pixels"
    visible_px, boxes, centroids = _truth(labels, len(paths))
    # 5. cameras: Unreal yaw of the view centre, plus a random world heading and position
    centre_offset = config.width / 2.0 - config.width // 2  # 0.5 for odd widths
    heading = rng.uniform(-180.0, 180.0)  # world yaw of panorama column 0
    yaw_deg = heading + (yaw_px + centre_offset) * 360.0 / P
    position = np.array([*rng.uniform(-5000.0, 5000.0, size=2), CAMERA_HEIGHT_CM])
    return FlatlandClip(
        frames=frames,
        labels=labels,
        camera_to_world=ue_yaw_matrices(yaw_deg, position),
        yaw_deg=yaw_deg,
        in_view=in_view,
        visible_px=visible_px,
        boxes=boxes,
        centroids=centroids,
        subjects=kinds,
        sprite_sizes=[tuple(int(n) for n in p.sprite.shape[2:]) for p in paths],
        style=style_name,
        landmarks=landmarks,
        events=events,
        context_frames=config.context_frames,
        azimuth_deg=heading + np.stack([p.azimuth_deg for p in paths], axis=1),
        seed=[int(seed), int(index)],
        camera_motion=config.camera_motion,
    )
