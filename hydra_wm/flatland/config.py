"""Flatland configuration: one typed dataclass, validated on construction, with presets by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError

SCENE_STYLES = ("meadow", "desert", "city", "snow", "dusk")
CAMERA_MOTIONS = ("pan", "glance", "tour")


def _range(value, name: str, cast=float, minimum=None, maximum=None) -> tuple:
    """A (low, high) pair; a single number means (value, value)."""
    if isinstance(value, (int, float)):
        value = (value, value)
    try:
        low, high = (cast(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"flatland config {name}: expected a number or a (low, high) pair, got {value!r}") from exc
    if low > high:
        raise InputError(f"flatland config {name}: low {low} is above high {high}")
    if minimum is not None and low < minimum:
        raise InputError(f"flatland config {name}: expected values >= {minimum}, got {low}")
    if maximum is not None and high > maximum:
        raise InputError(f"flatland config {name}: expected values <= {maximum}, got {high}")
    return (low, high)


@dataclass
class FlatlandConfig:
    """A miniature HM-World: a camera pans inside a wrapping panorama; subjects walk out of view and back.

    Ranges are (low, high) pairs sampled uniformly per clip. Frame counts are video frames.
    """

    height: int = 48
    """Frame height H in pixels."""
    width: int = 80
    """Frame width W in pixels (48x80 keeps HM-World's 480x832 aspect and divides by 16)."""
    context_frames: int = 21
    """Frames of the condition clip (`cond.mp4`); 4k+1 maps to k+1 latent frames of the Wan VAE."""
    target_frames: int = 21
    """Frames of the target clip (`tgt.mp4`)."""
    fov_deg: float = 90.0
    """Horizontal field of view; the panorama is `width * 360 / fov_deg` pixels around."""
    num_subjects: tuple[int, int] = (1, 3)
    """Subjects per clip."""
    pan_range_deg: tuple[float, float] = (90.0, 150.0)
    """Peak-to-peak amplitude of the camera's back-and-forth yaw pan."""
    camera_step_px: int = 1
    """The camera's yaw is a whole multiple of this many panorama pixels. 1: any pixel. Set to the model's token
    size in pixels (4 for `flatland-tiny` on `PixelCodec(2)`: 2x2 codec x 2x2 patch) and every view is a
    token-aligned window of the panorama, so a revisited view is the same tokens as before, not a sub-token
    shift of them that a tiny model must learn to resample."""
    camera_motion: str = "pan"
    """How the camera turns. `pan`: a smooth back-and-forth cosine sweep (one whole sweep inside the context).
    `glance`: it holds still at one of a few headings `glance_spacing_deg` apart inside the pan range, then
    turns quickly to another (a person looking around); the context visits every heading, so a view the target
    returns to is, pixel for pixel, one the context held earlier, at the same place in the frame. `tour` (long
    clips): glances between two neighbouring headings (a sector) of a ring all around, then moves on to another
    sector, or back home (the context's), so views come back after gaps of tens to hundreds of frames and subjects
    stay out of view for long stretches."""
    glance_spacing_deg: float = 45.0
    """`glance`: degrees between neighbouring headings (at most the field of view, so neighbours overlap)."""
    glance_dwell_frames: tuple[int, int] = (2, 5)
    """`glance`: frames the camera holds a heading."""
    glance_turn_frames: tuple[int, int] = (0, 1)
    """`glance`: in-between frames of a turn (0: the view jumps to the next heading)."""
    tour_stay_frames: tuple[int, int] = (12, 40)
    """`tour`: frames the camera glances between the two headings of a sector before it moves on."""
    tour_home_probability: float = 0.25
    """`tour`: chance that the camera goes back to the home sector (the context's) when it moves on, so views the
    context showed come back after gaps of varying length."""
    tour_keep_direction: float = 0.7
    """`tour`: otherwise it moves two headings on, in the direction it last moved with this chance."""
    glance_target_avoids_last: bool = True
    """`glance`: the target turns away from the last context frame's heading at once and never holds it, so no
    target view is the last context view again: its views are ones the context held before its end, which a
    local window cannot supply (and "repeat the last context frame" is never an exact copy, as it would be for
    every frame the camera spent back there, inflating that baseline's per-frame PSNR)."""
    sweep_frames: tuple[int, int] | None = None
    """Frames per half sweep (one end to the other); None: between half and all of the context length.
    Must fit inside the context so that the context sees every view the target will show."""
    out_of_view_frames: tuple[int, int] = (8, 30)
    """Duration of the guaranteed exit-entry event: frames the subject spends wholly out of view."""
    subject_height: tuple[float, float] = (0.38, 0.52)
    """Subject sprite height as a fraction of the frame height."""
    subject_speed_deg: tuple[float, float] = (0.6, 1.8)
    """Walking speed in degrees of panorama per frame (the camera pans several times faster)."""
    scene_styles: tuple[str, ...] = SCENE_STYLES
    """Scene styles to draw from (see `scenery.SCENE_STYLES`)."""
    fps: int = 15
    """Frame rate written into the mp4 files (HM-World's output rate)."""
    max_attempts: int = 400
    """Trajectory draws tried per clip before giving up on the event constraints."""

    def __post_init__(self) -> None:
        for name in ("height", "width", "context_frames", "target_frames", "fps", "max_attempts", "camera_step_px"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"flatland config {name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.height < 12 or self.width < 12:
            raise InputError(f"flatland config height/width: expected >= 12 pixels, got {self.height}x{self.width}")
        if self.context_frames < 4 or self.target_frames < 2:
            raise InputError(
                f"flatland config context_frames/target_frames: expected >= 4 and >= 2, "
                f"got {self.context_frames} and {self.target_frames}"
            )
        if not 10.0 <= self.fov_deg <= 180.0:
            raise InputError(f"flatland config fov_deg: expected 10..180 degrees, got {self.fov_deg}")
        if self.panorama_width % self.camera_step_px:
            raise InputError(
                f"flatland config camera_step_px: {self.camera_step_px} does not divide the panorama width "
                f"{self.panorama_width} (width * 360 / fov_deg), so views would not stay aligned across the wrap"
            )
        if self.camera_motion not in CAMERA_MOTIONS:
            raise InputError(
                f"flatland config camera_motion: expected one of {CAMERA_MOTIONS}, got {self.camera_motion!r}"
            )
        if not 0.0 < self.glance_spacing_deg <= self.fov_deg:
            raise InputError(
                f"flatland config glance_spacing_deg: expected 0 < spacing <= fov_deg {self.fov_deg}, "
                f"got {self.glance_spacing_deg}"
            )
        self.glance_dwell_frames = _range(self.glance_dwell_frames, "glance_dwell_frames", int, 1)
        self.glance_turn_frames = _range(self.glance_turn_frames, "glance_turn_frames", int, 0)
        self.tour_stay_frames = _range(self.tour_stay_frames, "tour_stay_frames", int, 2)
        for name in ("tour_home_probability", "tour_keep_direction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"flatland config {name}: expected 0..1, got {getattr(self, name)}")
        if self.camera_motion == "tour" and (
            self.panorama_width % self.heading_spacing_px or self.panorama_width // self.heading_spacing_px < 5
        ):
            raise InputError(
                f"flatland config glance_spacing_deg: the tour camera needs >= 5 headings {self.glance_spacing_deg} "
                f"degrees apart all around ({self.heading_spacing_px} of the {self.panorama_width} panorama pixels)"
            )
        self.num_subjects = _range(self.num_subjects, "num_subjects", int, 1, 3)
        self.pan_range_deg = _range(self.pan_range_deg, "pan_range_deg", float, 0.0, 360.0 - self.fov_deg)
        if self.camera_motion == "glance":
            headings = 3 if self.glance_target_avoids_last else 2  # the target alternates between >= 2 of them
            if self.pan_range_deg[0] < (headings - 1) * self.glance_spacing_deg:
                raise InputError(
                    f"flatland config pan_range_deg: the glance camera needs >= {headings} headings "
                    f"{self.glance_spacing_deg} degrees apart, so a range >= {(headings - 1) * self.glance_spacing_deg}"
                    f" degrees; got {self.pan_range_deg[0]}"
                )
        if self.sweep_frames is not None:
            self.sweep_frames = _range(self.sweep_frames, "sweep_frames", int, 2, self.context_frames - 1)
        self.out_of_view_frames = _range(self.out_of_view_frames, "out_of_view_frames", int, 1)
        if self.out_of_view_frames[0] > self.context_frames + self.target_frames - 3:
            raise InputError(
                f"flatland config out_of_view_frames: minimum {self.out_of_view_frames[0]} does not fit "
                f"a clip "
                f"of {self.context_frames}+{self.target_frames} frames"
            )
        self.subject_height = _range(self.subject_height, "subject_height", float, 0.1, 0.7)
        self.subject_speed_deg = _range(self.subject_speed_deg, "subject_speed_deg", float, 0.0)
        self.scene_styles = tuple(self.scene_styles)
        unknown = [s for s in self.scene_styles if s not in SCENE_STYLES]
        if not self.scene_styles or unknown:
            raise InputError(f"flatland config scene_styles: expected some of {SCENE_STYLES}, got {self.scene_styles}")

    @property
    def panorama_width(self) -> int:
        """Pixels around the full 360 degrees; one panorama column is the camera's yaw quantum."""
        return round(self.width * 360.0 / self.fov_deg)

    @property
    def heading_spacing_px(self) -> int:
        """Panorama pixels between neighbouring `glance` / `tour` headings (a whole number of camera steps)."""
        step = self.camera_step_px
        return max(round(self.glance_spacing_deg * self.panorama_width / 360.0 / step), 1) * step

    @property
    def total_frames(self) -> int:
        return self.context_frames + self.target_frames

    def half_sweep_range(self) -> tuple[int, int]:
        """Frames per half sweep; by default half..all of the context (so the context holds a full sweep)."""
        if self.sweep_frames is not None:
            return self.sweep_frames
        return (max(2, (self.context_frames - 1) // 2), self.context_frames - 1)

    def replace(self, **changes) -> FlatlandConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FLATLAND_PRESETS: dict[str, FlatlandConfig] = {
    # HM-World in miniature: 48x80 (HM-World's aspect), 21+21 frames (6+6 Wan latent frames).
    "default": FlatlandConfig(),
    # The built-in models' size: 32x32, 20+20 frames for a codec without temporal compression (64 tokens per
    # frame for `flatland-tiny` on `PixelCodec(2)`).
    "small": FlatlandConfig(height=32, width=32, context_frames=20, target_frames=20, out_of_view_frames=(6, 24)),
    # `small` with the camera moving in whole 4-px steps, one token of `flatland-tiny` on `PixelCodec(2)`, so a
    # revisited view is exactly the tokens seen before (see `camera_step_px`). Fine-tuning the pan-world models on it
    # did not help (MODEL_CARD.md, "Recipe notes").
    "small-aligned": FlatlandConfig(
        height=32, width=32, context_frames=20, target_frames=20, out_of_view_frames=(6, 24), camera_step_px=4
    ),
    # `small` with the `glance` camera: it holds one of 3-4 headings 45 degrees (16 px, 4 tokens of `flatland-tiny`)
    # apart and turns between them in at most one in-between frame, every heading token-aligned. Returning to a
    # heading shows the same tokens at the same screen positions, so copying from memory needs no camera-dependent
    # shift, only finding the frames with the same camera (see MODEL_CARD.md, "Recipe notes").
    "small-glance": FlatlandConfig(
        height=32,
        width=32,
        context_frames=20,
        target_frames=20,
        out_of_view_frames=(6, 24),
        camera_step_px=4,
        camera_motion="glance",
    ),
    # Long horizons (rollouts, docs/rollout.md): `small-glance`'s frames and context with 220 target frames (11 chunks
    # of 20) of the `tour` camera: 8 token-aligned headings 45 degrees apart all around; it glances between the 2
    # headings of a sector for 12-40 frames, then moves 90 degrees on or back home (the context's sector). Background
    # comes back after 20-200 frames away (~30% of target pixels; ~19% are views no earlier frame showed) and subjects
    # stay out of view for long stretches (10-200 frames for the event every clip holds).
    "long-glance": FlatlandConfig(
        height=32,
        width=32,
        context_frames=20,
        target_frames=220,
        out_of_view_frames=(10, 200),
        camera_step_px=4,
        camera_motion="tour",
    ),
    # What unit tests use: tiny and quick.
    "debug": FlatlandConfig(height=16, width=24, context_frames=9, target_frames=9, out_of_view_frames=(2, 12)),
}


def flatland_config(name: str = "default", **overrides) -> FlatlandConfig:
    """A preset by name, with optional field overrides."""
    if name not in FLATLAND_PRESETS:
        raise InputError(f"unknown flatland preset {name!r}; known: {', '.join(sorted(FLATLAND_PRESETS))}")
    return FLATLAND_PRESETS[name].replace(**overrides)
